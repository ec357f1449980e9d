"""Matching rounds: a funder's pool, shared among campaigns by a published rule, that
anyone can recompute from the round's published contributions."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The rounds' pages and API, and what campaign pages show of them."""
    from accounts.signals import account_closing, account_exporting
    from rounds import demo, personal_data
    from rounds.api import bp as rounds_api
    from rounds.panel import campaign_rounds
    from rounds.views import bp as rounds_bp

    for blueprint in (rounds_bp, rounds_api):
        app.register_blueprint(blueprint)
    app.jinja_env.globals["campaign_rounds"] = campaign_rounds
    # payments.demo replays the demo's history in time order, the rounds' steps with it.
    app.extensions.setdefault("demo_steps", []).append(demo.steps)
    account_closing.connect(personal_data.close)
    account_exporting.connect(personal_data.export)

"""Campaigns: drafting, launching, committees, updates, listing, search, moderation."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The campaign pages (the home page among them), the API, moderation."""
    from accounts.signals import account_closing, account_exporting
    from campaigns import (
        periods,
        personal_data,
    )
    from campaigns.api import bp as campaigns_api
    from campaigns.embeds import bp as embeds_bp
    from campaigns.models import role_can
    from campaigns.moderation import bp as moderation_bp
    from campaigns.views import bp as campaigns_bp

    for blueprint in (campaigns_bp, campaigns_api, embeds_bp, moderation_bp):
        app.register_blueprint(blueprint)
    app.jinja_env.globals["role_can"] = role_can
    app.jinja_env.globals["recurrence_summary"] = periods.summary
    account_closing.connect(personal_data.close)
    account_exporting.connect(personal_data.export)

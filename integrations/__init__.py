"""Integrations: the API's own document and reference page, personal API tokens for
committee members, webhooks, and the open data dump."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Pages (reference, tokens, webhooks), the organizers' API, webhook events from
    the packages' signals, and their delivery in the sweep."""
    from integrations import dump, events, webhooks
    from integrations.organizer_api import bp as organizer_api
    from integrations.views import api_bp, bp

    for blueprint in (bp, api_bp, organizer_api):
        app.register_blueprint(blueprint)
    events.connect()
    # The sweep retries what is due (deliveries queued by a change are sent at once).
    app.extensions.setdefault("sweep_tasks", []).append(webhooks.deliver_due)
    app.extensions["sweep_tasks"].append(dump.rebuild_if_stale)

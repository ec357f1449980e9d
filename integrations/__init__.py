"""Integrations: the API's own document and reference page, personal API tokens for
committee members, webhooks, and the open data dump."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from integrations.views import api_bp, bp

    for blueprint in (bp, api_bp):
        app.register_blueprint(blueprint)

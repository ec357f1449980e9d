"""Counterfund's application factory.

`create_app()` builds an app from the environment (or from `overrides`, for tests);
`app` is the module-level instance gunicorn and `flask --app app` use, built on first
access so importing this module has no side effects.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import accounts
import campaigns
import core
import integrations
import ledger
import payments
import rounds
from core.config import config_from_environment

HERE = os.path.dirname(os.path.abspath(__file__))


class CounterfundFlask(Flask):
    def log_exception(self, exc_info) -> None:
        """Name the route's pattern, never the path: paths carry bearer tokens (guest
        manage links, login and confirmation links)."""
        from flask import request

        rule = request.url_rule.rule if request.url_rule else "(no route)"
        self.logger.error("Exception on %s [%s]", rule, request.method, exc_info=exc_info)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = CounterfundFlask(
        __name__,
        instance_path=os.environ.get("COUNTERFUND_INSTANCE") or os.path.join(HERE, "instance"),
        template_folder=os.path.join(HERE, "templates"),
        static_folder=os.path.join(HERE, "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(config_from_environment(app.instance_path))
    app.config.update(overrides or {})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    # Each package wires itself (blueprints, CLI, signals, template globals): the
    # extensions first, then the features, lowest layer first.
    core.init_app(app, migrations=os.path.join(HERE, "migrations"))
    for package in (accounts, campaigns, ledger, payments, rounds, integrations):
        package.init_app(app)
    if app.config["PROXY_FIX_X_FOR"]:
        # Outermost (after core's page-cache middleware): every layer sees the client's
        # address and scheme. Flask's documented way to wrap the WSGI app (typeshed
        # calls it a method).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"], x_proto=1
        )
    return app


def __getattr__(name: str):
    if name == "app":
        globals()["app"] = instance = create_app()
        return instance
    raise AttributeError(name)

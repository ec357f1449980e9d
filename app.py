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
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from core.config import config_from_environment
from core.extensions import babel, csrf, db, limiter, login_manager, migrate

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

    if app.config["PROXY_FIX_X_FOR"]:
        # Flask's documented way to wrap the WSGI app (typeshed calls it a method).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"], x_proto=1
        )

    _check_keys(app)
    _init_extensions(app)
    _register_blueprints(app)
    _init_templating(app)
    return app


def _check_keys(app: Flask) -> None:
    from core.config import ConfigError
    from ledger.signing import SigningKeyError, check_key

    try:
        check_key(app.config)
    except SigningKeyError as exc:
        raise ConfigError(f"ledger signing key: {exc}") from None


def _init_extensions(app: Flask) -> None:
    from accounts.services import load_session_user
    from accounts.sessions import enforce_session_lifetime
    from core.i18n import select_locale
    from core.outbox import deliver_after_request
    from core.outbox import health as outbox_health
    from core.security import init_security
    from payments.backends import init_backend

    db.init_app(app)
    migrate.init_app(
        app, db, directory=os.path.join(HERE, "migrations"), render_as_batch=True, compare_type=True
    )
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale)

    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = None
    login_manager.user_loader(load_session_user)
    app.before_request(enforce_session_lifetime)
    init_security(app)
    app.after_request(deliver_after_request)
    app.extensions.setdefault("health_checks", {})["outbox"] = outbox_health
    init_backend(app)
    _init_jobs(app)


def _init_jobs(app: Flask) -> None:
    from campaigns import signals
    from core import heartbeat  # noqa: F401 - registers the heartbeat model
    from core.jobs import init_jobs, start_background_jobs
    from payments import jobs, reconcile  # noqa: F401 - registers the report model
    from payments.health import settlement_health

    init_jobs(app, sweep=jobs.sweep)
    app.extensions.setdefault("health_checks", {})["settlement"] = settlement_health
    signals.campaign_launched.connect(jobs.schedule_deadline)
    signals.campaign_cancelled.connect(jobs.release_on_cancel)
    if app.config["JOB_RUNNER"] == "thread":
        # The embedded scheduler thread starts with the first request, so CLI commands
        # (migrations, the demo loader) never start one.
        app.before_request(lambda: start_background_jobs(app))


def _register_blueprints(app: Flask) -> None:
    from accounts.cli import bp as users_cli
    from accounts.views import bp as accounts_bp
    from campaigns.api import bp as campaigns_api
    from campaigns.moderation import bp as moderation_bp
    from campaigns.views import bp as campaigns_bp
    from core.cli import bp as outbox_cli
    from core.views import bp as core_bp
    from core.views import handle_http_error
    from ledger.api import bp as ledger_api
    from ledger.cli import bp as ledger_cli
    from ledger.disbursement_views import bp as disbursements_bp
    from ledger.views import bp as ledger_bp
    from payments.cli import bp as demo_cli
    from payments.cli import settle_cli
    from payments.views import bp as payments_bp
    from payments.webhooks import bp as webhooks_bp

    for blueprint in (
        core_bp,
        outbox_cli,
        accounts_bp,
        users_cli,
        campaigns_bp,
        campaigns_api,
        moderation_bp,
        demo_cli,
        payments_bp,
        webhooks_bp,
        settle_cli,
        ledger_api,
        ledger_cli,
        ledger_bp,
        disbursements_bp,
    ):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, handle_http_error)


def _init_templating(app: Flask) -> None:
    from flask_babel import get_locale
    from flask_login import current_user

    from campaigns.forms import ConfirmForm
    from campaigns.models import role_can
    from core.clock import utcnow
    from core.i18n import LOCALE_NAMES, datetime_filter, money_filter, time_left_filter
    from core.money import Money
    from core.urls import public_url_for
    from payments.chart import pledge_chart
    from payments.services import recent_supporters

    app.jinja_env.filters["money"] = money_filter
    app.jinja_env.filters["money_in"] = lambda amount, currency: money_filter(
        Money(int(amount), currency)
    )
    app.jinja_env.filters["datetime"] = datetime_filter
    app.jinja_env.filters["time_left"] = time_left_filter
    app.jinja_env.globals["recent_supporters"] = recent_supporters
    app.jinja_env.globals["pledge_chart"] = pledge_chart
    app.jinja_env.globals["public_url_for"] = public_url_for
    app.jinja_env.globals["role_can"] = role_can

    @app.context_processor
    def globals_for_templates():
        return {
            "get_locale": get_locale,
            "now_utc": utcnow,
            "locale_names": LOCALE_NAMES,
            "payment_backend": app.config["PAYMENT_BACKEND"],
            # formdata=None: never parse the request body here (an oversized one would
            # raise again while its 413 page renders).
            "logout_form": ConfirmForm(formdata=None) if current_user.is_authenticated else None,
        }


def __getattr__(name: str):
    if name == "app":
        globals()["app"] = instance = create_app()
        return instance
    raise AttributeError(name)

"""Shared plumbing: configuration, extensions, money, time, Markdown, security headers,
email, jobs. Imports no feature package."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask, migrations: str) -> None:
    """Extensions, security headers, the outbox, languages and formatting, the health
    and error pages, and the `outbox` CLI."""
    from flask_babel import get_locale
    from werkzeug.exceptions import HTTPException

    from core import page_cache
    from core.api import RowIdConverter, after_api_request
    from core.cli import bp as outbox_cli
    from core.clock import utcnow
    from core.extensions import babel, csrf, db, limiter, login_manager, migrate
    from core.i18n import (
        LOCALE_NAMES,
        LocalizedRequest,
        datetime_filter,
        format_money,
        iso_datetime_filter,
        select_locale,
        time_left_filter,
    )
    from core.money import Money
    from core.outbox import health as outbox_health
    from core.security import init_security
    from core.urls import public_url_for
    from core.views import bp as core_bp
    from core.views import handle_http_error

    # Before any blueprint adds its routes: they compile with the map's converters.
    app.url_map.converters["int"] = RowIdConverter
    db.init_app(app)
    migrate.init_app(app, db, directory=migrations, render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    app.request_class = LocalizedRequest
    login_manager.init_app(app)
    # Before the other after_request hooks: Flask runs them last-registered first, so
    # the page is stored with the security and API headers they add.
    page_cache.init_app(app)
    init_security(app)
    app.after_request(after_api_request)
    app.extensions.setdefault("health_checks", {})["outbox"] = outbox_health

    app.register_blueprint(core_bp)
    app.register_blueprint(outbox_cli)
    app.register_error_handler(HTTPException, handle_http_error)

    app.jinja_env.filters["money"] = format_money
    app.jinja_env.filters["money_in"] = lambda amount, currency: format_money(
        Money(int(amount), currency)
    )
    app.jinja_env.filters["datetime"] = datetime_filter
    app.jinja_env.filters["iso_datetime"] = iso_datetime_filter
    app.jinja_env.filters["time_left"] = time_left_filter
    app.jinja_env.globals["public_url_for"] = public_url_for

    @app.context_processor
    def core_globals():
        return {"get_locale": get_locale, "now_utc": utcnow, "locale_names": LOCALE_NAMES}

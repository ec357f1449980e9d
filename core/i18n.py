"""Interface language and locale-aware formatting."""

from __future__ import annotations

from datetime import UTC

from babel.dates import format_datetime, format_timedelta
from flask import has_request_context, request, session
from flask_babel import get_locale

# Interface translations shipped (the campaign's own language is separate), each named
# in its own language for the switcher.
INTERFACE_LOCALES = ("en", "es", "de", "pt_BR")
LOCALE_NAMES = {"en": "English", "es": "Español", "de": "Deutsch", "pt_BR": "Português (Brasil)"}


def select_locale() -> str:
    if not has_request_context():  # CLI commands and jobs speak the default language
        return "en"
    chosen = session.get("locale")
    if chosen in INTERFACE_LOCALES:
        return chosen
    return request.accept_languages.best_match(INTERFACE_LOCALES) or "en"


def current_locale() -> str:
    """The visitor's interface locale ("en" outside a request), for reading amounts."""
    return str(get_locale()) if has_request_context() else "en"


def money_filter(money) -> str:
    return money.format(locale=str(get_locale()))


def iso_datetime_filter(text: str) -> str:
    """A stored ISO 8601 UTC time (the ledger's hashed entries keep them as text), in
    the visitor's locale."""
    from datetime import datetime

    return datetime_filter(datetime.fromisoformat(text))


def datetime_filter(moment) -> str:
    return format_datetime(moment, "medium", tzinfo=UTC, locale=str(get_locale())) + " UTC"


def time_left_filter(seconds: int) -> str:
    from datetime import timedelta

    return format_timedelta(timedelta(seconds=seconds), threshold=1.1, locale=str(get_locale()))

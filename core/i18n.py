"""Interface language and locale-aware formatting."""

from __future__ import annotations

from datetime import UTC
from functools import cached_property, lru_cache

from babel import support
from babel.dates import format_datetime, format_timedelta
from flask import Request, has_request_context, request, session
from flask_babel import get_locale
from wtforms.i18n import messages_path

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


@lru_cache(maxsize=len(INTERFACE_LOCALES) + 1)
def _wtforms_catalog(locale: str) -> support.NullTranslations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class LocalizedRequest(Request):
    """Flask-WTF takes WTForms' own catalog (its built-in messages: "Not a valid
    choice.") from `request.wtforms_translations` and otherwise reads it from disk for
    every request that shows a form, about 0.4 ms (some 5 % of a pledge's CPU). Each
    language's catalog is read once per process instead, when a request first asks."""

    @cached_property
    def wtforms_translations(self) -> support.NullTranslations:
        return _wtforms_catalog(str(get_locale()))


def current_locale() -> str:
    """The locale its reader reads amounts in: the visitor's, an email's recipient's
    (`force_locale`), the default language where there is neither."""
    locale = get_locale()
    return str(locale) if locale else "en"


def format_money(money) -> str:
    """An amount as its reader reads amounts: "€1.00" is no number to a German reader,
    and "1.000" is a thousand to them."""
    return money.format(current_locale())


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

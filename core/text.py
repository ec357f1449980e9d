"""Cleaning what people type into single-line fields (titles, names, payees).

Line and paragraph separators, other control characters, bidi overrides and
zero-width characters have no place in a one-line value: they break email headers
(a title with U+2028 once stopped all mail), CSV cells and log lines, and bidi
overrides can make a name read backwards (Trojan Source). They are removed at input.
"""

from __future__ import annotations

import re
import unicodedata

from wtforms import StringField

# Bidi embeddings/overrides/isolates and marks, zero-width characters, word joiner,
# BOM: all category Cf, which is removed as a whole below.
_SPACES = re.compile(r"\s+")


def single_line(value: str | None) -> str | None:
    if value is None:
        return None
    kept = []
    for char in value:
        category = unicodedata.category(char)
        if category in ("Zl", "Zp") or char in "\t\n\r\x0b\x0c\x85":
            kept.append(" ")  # a separator between words stays a space
        elif category in ("Cc", "Cf", "Co", "Cs", "Cn"):
            continue
        else:
            kept.append(char)
    return _SPACES.sub(" ", "".join(kept)).strip()


class SingleLineField(StringField):
    """A StringField whose value is cleaned with `single_line`."""

    def __init__(self, *args, filters=(), **kwargs):
        super().__init__(*args, filters=(single_line, *filters), **kwargs)


_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet will not run as a formula (OWASP's rule: text starting
    with = + - @ tab or carriage return gets a leading apostrophe). Numbers stay
    numbers; JSON exports and ledger leaves keep the exact text."""
    if isinstance(value, str) and value.startswith(_FORMULA_TRIGGERS):
        return "'" + value
    return value


def spreadsheet_row(values) -> list:
    return [spreadsheet_safe(value) for value in values]

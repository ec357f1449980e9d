"""Money: an integer amount in minor units plus an ISO 4217 currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from babel.core import get_global
from babel.numbers import (
    NumberFormatError,
    format_currency,
    format_decimal,
    get_currency_name,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    get_territory_currencies,
    list_currencies,
    parse_decimal,
)
from flask_babel import lazy_gettext as _l

# Currencies that are ISO codes but not money anyone pledges in (funds, metals, testing).
_NOT_FOR_PLEDGES = {
    "XAG",
    "XAU",
    "XBA",
    "XBB",
    "XBC",
    "XBD",
    "XDR",
    "XPD",
    "XPT",
    "XSU",
    "XTS",
    "XUA",
    "XXX",
    "BOV",
    "CHE",
    "CHW",
    "CLF",
    "COU",
    "MXV",
    "USN",
    "UYI",
    "UYW",
}
# Every ISO code Money can carry (old rows may hold a currency no longer offered).
CURRENCIES = frozenset(c for c in list_currencies() if c not in _NOT_FOR_PLEDGES)

# What a payment processor can charge: Stripe's presentment currencies.
_PROCESSOR_CURRENCY_CODES = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BWP BYN "
    "BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP "
    "GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO "
    "NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP "
    "SLE SOS SRD SZL THB TJS TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VND VUV WST XAF XCD "
    "XOF XPF YER ZAR ZMW "
)
_PROCESSOR_CURRENCIES = frozenset(_PROCESSOR_CURRENCY_CODES.split())


def _tender_today() -> frozenset[str]:
    """ISO 4217 currencies legal tender somewhere today (CLDR): no Deutsche Mark, no
    US Dollar (Next day). Babel's defaults are today and tender only."""
    return frozenset(
        code
        for territory in get_global("territory_currencies")
        for code in get_territory_currencies(territory)
    )


# What a new campaign may collect in: active, and chargeable by a processor.
PLEDGE_CURRENCIES = frozenset(_PROCESSOR_CURRENCIES & _tender_today() & CURRENCIES)

# Bounds on what a person may type: far above any pledge, far below a DoS.
MAX_INPUT_LENGTH = 32
MAX_MINOR_UNITS = 10**15


def currency_name(code: str, locale: str) -> str:
    return get_currency_name(code, locale=locale)


def _looks_like_a_number(text: str, decimal_mark: str, group_mark: str) -> bool:
    """ASCII digits and the locale's two separators only (no exponent, no other
    script's digits, which Python's Decimal would read), one optional leading sign."""
    allowed = "0123456789" + decimal_mark + group_mark
    body = text[1:] if text[:1] in "+-" else text
    return bool(body) and any(c.isdigit() for c in body) and all(c in allowed for c in body)


def _strip_currency(text: str, currency: str, locale: str) -> str:
    symbols = {currency, get_currency_symbol(currency, locale=locale)}
    for symbol in sorted(symbols, key=len, reverse=True):
        if text.startswith(symbol):
            text = text[len(symbol) :]
        elif text.endswith(symbol):
            text = text[: -len(symbol)]
    # Any space between symbol and number: CLDR patterns use no-break and narrow spaces.
    return text.strip()


def _shorten(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "…"


def _misread_message(raw: str, exc: NumberFormatError, decimal_mark: str, group_mark: str):
    suggestions = [s for s in exc.suggestions or [] if s]
    rule = _l(
        "Here “%(dec)s” marks the decimals and “%(group)s” separates thousands.",
        dec=decimal_mark,
        group=group_mark,
    )
    if suggestions:
        return _l(
            "“%(text)s” is ambiguous: did you mean %(options)s? %(rule)s",
            text=_shorten(raw),
            options=" / ".join(suggestions),
            rule=rule,
        )
    return _l("“%(text)s” is not a number in this format. %(rule)s", text=_shorten(raw), rule=rule)


class MoneyError(ValueError):
    """Malformed amount or currency, or arithmetic across currencies."""


def validate_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if code not in CURRENCIES:
        raise MoneyError(_l("%(code)s is not an ISO 4217 currency code", code=code or "''"))
    return code


def exponent(currency: str) -> int:
    return get_currency_precision(validate_currency(currency))


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units (cents, pence, yen)
    currency: str

    def __post_init__(self):
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise MoneyError("Money amounts are whole minor units")
        object.__setattr__(self, "currency", validate_currency(self.currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str, locale: str) -> Money:
        """Read what a person typed in major units, exactly, in their locale.

        "12,50" is twelve and a half in de/es/pt_BR and refused in en (where "," groups
        thousands); a separator in the wrong place, an exponent, digits of another
        script or more decimals than the currency has are refused with a message
        that says what was understood. A currency code or symbol around the number
        is allowed ("€12.50", "12,50 €").
        """
        currency = validate_currency(currency)
        raw = _strip_currency((text or "").strip(), currency, locale)
        if not raw:
            raise MoneyError(_l("Enter an amount"))
        decimal_mark = get_decimal_symbol(locale)
        group_mark = get_group_symbol(locale)
        if len(raw) > MAX_INPUT_LENGTH or not _looks_like_a_number(raw, decimal_mark, group_mark):
            raise MoneyError(
                _l(
                    "“%(text)s” is not a number. Type digits, with “%(dec)s” before the "
                    "decimals and optionally “%(group)s” between thousands.",
                    text=_shorten(raw),
                    dec=decimal_mark,
                    group=group_mark,
                )
            )
        try:
            value = parse_decimal(raw, locale, strict=True)
        except NumberFormatError as exc:
            raise MoneyError(_misread_message(raw, exc, decimal_mark, group_mark)) from None
        places = exponent(currency)
        typed_places = len(raw.rpartition(decimal_mark)[2]) if decimal_mark in raw else 0
        if typed_places > places:
            raise MoneyError(
                _l(
                    "“%(text)s” has %(typed)d decimal places; %(currency)s amounts have at "
                    "most %(n)d decimal places.",
                    text=raw,
                    typed=typed_places,
                    currency=currency,
                    n=places,
                )
            )
        minor = int(value.scaleb(places))
        if abs(minor) > MAX_MINOR_UNITS:
            raise MoneyError(_l("“%(text)s” is too large an amount.", text=_shorten(raw)))
        return cls(minor, currency)

    @classmethod
    def from_major(cls, units: int, currency: str) -> Money:
        return cls(units * 10 ** exponent(currency), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("Money only combines with Money")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def input_value(self, locale: str) -> str:
        """The amount as a person would type it back into a form, in their locale
        (no grouping, the currency's decimals only when there are any)."""
        places = exponent(self.currency)
        whole = self.amount % 10**places == 0
        # The pattern has no grouping and exactly the amount's decimals, so babel neither
        # groups nor rounds.
        pattern = "0" if whole else "0." + "0" * places
        return format_decimal(self.decimal, format=pattern, locale=locale)

    def format(self, locale: str) -> str:
        return format_currency(self.decimal, self.currency, locale=locale)

    def as_json(self) -> dict:
        return {"amount": self.amount, "currency": self.currency}

    def __str__(self) -> str:
        """For logs and operators: the same in every language ("12.50 EUR"). What a
        person reads in a page or an email is formatted in their locale
        (`core.i18n.format_money`, the `money` filter)."""
        return f"{self.decimal} {self.currency}"

"""Money: an integer amount in minor units plus an ISO 4217 currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision, list_currencies
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
CURRENCIES = frozenset(c for c in list_currencies() if c not in _NOT_FOR_PLEDGES)


class MoneyError(ValueError):
    """Malformed amount or currency, or arithmetic across currencies."""


def validate_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if len(code) != 3 or not code.isalpha() or code not in CURRENCIES:
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
    def parse(cls, text: str, currency: str) -> Money:
        """Parse what a person typed in major units ("12", "12.50") exactly."""
        cleaned = (text or "").strip().replace(",", "").replace("_", "")
        if not cleaned:
            raise MoneyError(_l("Enter an amount"))
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise MoneyError(_l("“%(text)s” is not a number", text=text)) from None
        if not value.is_finite():
            raise MoneyError(_l("“%(text)s” is not a number", text=text))
        places = exponent(currency)
        minor = value.scaleb(places)
        if minor != minor.to_integral_value():
            raise MoneyError(
                _l(
                    "%(currency)s amounts have at most %(n)d decimal places",
                    currency=currency.upper(),
                    n=places,
                )
            )
        return cls(int(minor), currency)

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

    def input_value(self) -> str:
        """The amount as a person would type it back into a form."""
        return f"{self.decimal:f}"

    def format(self, locale: str = "en") -> str:
        return format_currency(self.decimal, self.currency, locale=locale)

    def as_json(self) -> dict:
        return {"amount": self.amount, "currency": self.currency}

    def __str__(self) -> str:
        return self.format()

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import Money, MoneyError, exponent, validate_currency


def test_parse_uses_the_currency_exponent():
    assert Money.parse("12.50", "EUR") == Money(1250, "EUR")
    assert Money.parse("1,000", "USD") == Money(100_000, "USD")
    assert Money.parse("500", "JPY") == Money(500, "JPY")
    assert Money.parse("1.234", "KWD") == Money(1234, "KWD")
    with pytest.raises(MoneyError, match="at most 0 decimal"):
        Money.parse("1.5", "JPY")
    with pytest.raises(MoneyError, match="at most 2 decimal"):
        Money.parse("0.001", "EUR")


@pytest.mark.parametrize("text", ["", "abc", "1e", "NaN", "Infinity", "--1", "1.2.3"])
def test_parse_rejects_non_numbers(text):
    with pytest.raises(MoneyError):
        Money.parse(text, "EUR")


@pytest.mark.parametrize("code", ["", "EU", "EURO", "eu1", "ZZZ", "XXX", "XAU"])
def test_bad_currencies_are_refused(code):
    with pytest.raises(MoneyError):
        validate_currency(code)


def test_no_floats_and_no_cross_currency_arithmetic():
    with pytest.raises(MoneyError):
        Money(12.5, "EUR")
    with pytest.raises(MoneyError):
        Money(True, "EUR")
    with pytest.raises(MoneyError):
        Money(100, "EUR") + Money(100, "USD")
    with pytest.raises(MoneyError):
        _ = Money(100, "EUR") < Money(100, "GBP")
    assert Money(100, "eur") + Money(50, "EUR") == Money(150, "EUR")


@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(["EUR", "USD", "JPY", "KWD", "BRL", "GBP"]),
)
def test_input_value_round_trips(amount, currency):
    money = Money(amount, currency)
    assert Money.parse(money.input_value(), currency) == money


@given(st.lists(st.integers(min_value=0, max_value=10**12), max_size=30))
def test_sums_are_exact(amounts):
    total = Money.zero("EUR")
    for amount in amounts:
        total += Money(amount, "EUR")
    assert total.amount == sum(amounts)


def test_formatting_is_locale_aware():
    assert Money(123456, "EUR").format("en") == "€1,234.56"
    assert Money(123456, "EUR").format("de_DE") == "1.234,56\xa0€"
    assert exponent("JPY") == 0

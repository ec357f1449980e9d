"""The simulated provider: Stripe's test cards, idempotency keys, off-session rules.

These cover what localstripe does not (it ignores idempotency keys and never demands
authentication off-session).
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.money import Money
from payments.backends.base import BackendError, CardError
from payments.backends.simulated import SimulatedBackend, SimulatedProvider, luhn_ok


@pytest.fixture
def backend(tmp_path) -> SimulatedBackend:
    return SimulatedBackend(SimulatedProvider(str(tmp_path / "provider.db")))


def _saved(backend, number="4242424242424242", ref="pledge-1"):
    customer = backend.create_customer(ref)
    session = backend.start_setup(ref, customer)
    card = backend.provider.confirm_setup(session.setup_id, number)
    return customer, card


def _charge(backend, customer, card, key="pledge-1-attempt-1", amount=1000, ref="pledge-1"):
    return backend.charge(
        pledge_ref=ref,
        amount=Money(amount, "EUR"),
        customer_id=customer,
        payment_method_id=card.payment_method_id,
        idempotency_key=key,
    )


def test_luhn():
    assert luhn_ok("4242424242424242") and luhn_ok("5555555555554444")
    assert not luhn_ok("4242424242424241") and not luhn_ok("abc") and not luhn_ok("42")


def test_save_and_charge_a_good_card(backend):
    customer, card = _saved(backend)
    assert card.status == "succeeded" and card.last4 == "4242"
    result = _charge(backend, customer, card)
    assert result.status == "succeeded" and result.amount == 1000
    assert result.fee == 1000 * 150 // 10_000 + 25
    assert backend.find_charge("pledge-1", customer).charge_id == result.charge_id


def test_declined_when_saved(backend):
    customer = backend.create_customer("p")
    session = backend.start_setup("p", customer)
    with pytest.raises(CardError) as caught:
        backend.provider.confirm_setup(session.setup_id, "4000000000000002")
    assert caught.value.code == "card_declined"
    assert backend.saved_card(session.setup_id).status == "failed"
    assert backend.provider.count_calls("confirm_setup", "p") == 1


@pytest.mark.parametrize(
    ("number", "status", "code"),
    [
        ("4000000000000341", "failed", "card_declined"),
        ("4000000000009995", "failed", "insufficient_funds"),
        ("4000002760003184", "requires_action", "authentication_required"),
    ],
)
def test_cards_that_save_but_fail_off_session(backend, number, status, code):
    customer, card = _saved(backend, number)
    assert card.status == "succeeded"
    result = _charge(backend, customer, card)
    assert (result.status, result.decline_code) == (status, code)
    assert backend.find_charge("pledge-1", customer) is None
    assert backend.provider.charges_for("pledge-1") == []


def test_an_idempotency_key_never_charges_twice(backend):
    customer, card = _saved(backend)
    first = _charge(backend, customer, card, key="pledge-1-attempt-1")
    again = _charge(backend, customer, card, key="pledge-1-attempt-1")
    assert again.charge_id == first.charge_id
    assert len(backend.provider.charges_for("pledge-1")) == 1
    assert backend.provider.count_calls("charge", "pledge-1") == 2


def test_concurrent_charges_with_one_key_make_one_charge(backend):
    customer, card = _saved(backend)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: _charge(backend, customer, card), range(16)))
    assert len({r.charge_id for r in results}) == 1
    assert len(backend.provider.charges_for("pledge-1")) == 1


def test_released_cards_cannot_be_charged(backend):
    customer, card = _saved(backend)
    backend.release(customer, None)
    assert backend.provider.is_detached(card.payment_method_id)
    result = _charge(backend, customer, card)
    assert result.status == "failed"
    assert backend.provider.charges_for("pledge-1") == []


def test_refunds_are_idempotent_and_bounded(backend):
    customer, card = _saved(backend)
    charge = _charge(backend, customer, card)
    first = backend.refund(charge.charge_id, Money(400, "EUR"), "refund-1")
    assert backend.refund(charge.charge_id, Money(400, "EUR"), "refund-1") == first
    with pytest.raises(BackendError):
        backend.refund(charge.charge_id, Money(700, "EUR"), "refund-2")


def test_records_live_outside_the_apps_transaction(backend, tmp_path):
    """Another connection (another process, the auditor) sees a charge at once."""
    customer, card = _saved(backend)
    _charge(backend, customer, card)
    outside = sqlite3.connect(tmp_path / "provider.db")
    rows = outside.execute("SELECT count(*) FROM charges WHERE status = 'succeeded'").fetchone()
    outside.close()
    assert rows == (1,)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3056930009020004", "diners"),
        ("3566002020360505", "jcb"),
        ("6200000000000005", "unionpay"),
    ],
)
def test_a_saved_card_has_its_own_brand(backend, number, brand):
    """Stripe's test cards of every brand (a Mastercard was shown as Visa)."""
    _customer, card = _saved(backend, number)
    assert (card.brand, card.last4) == (brand, number[-4:])


def test_a_first_connection_waits_while_another_is_still_setting_the_file_up(tmp_path):
    """Workers starting at once on a fresh provider file: one is switching it to WAL
    (a write lock on a file still in rollback mode) when another asks for WAL too.
    SQLite answers that one "database is locked" at once, without waiting (CI saw a
    pledge fail with it); it must wait for the first instead."""
    import threading
    import time

    path = tmp_path / "provider.db"
    setting_up = sqlite3.connect(path, isolation_level=None)
    setting_up.execute("BEGIN IMMEDIATE")
    setting_up.execute("CREATE TABLE first_worker (a)")
    provider = SimulatedProvider(str(path))
    outcome: dict[str, str] = {}

    def connect() -> None:
        try:
            provider._connection()
            outcome["second"] = "connected"
        except sqlite3.OperationalError as error:
            outcome["second"] = repr(error)

    second = threading.Thread(target=connect)
    second.start()
    time.sleep(0.3)
    setting_up.execute("COMMIT")
    second.join(10)
    assert outcome == {"second": "connected"}
    assert provider._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"

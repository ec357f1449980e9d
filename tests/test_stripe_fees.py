"""Stripe's real fees on the ledger (issue 16): each charge's fee is read from its
balance transaction, recorded as the charge's `processor_fee` transaction, at once or,
when Stripe reports it late, when the signed `charge.updated` event or the sweep finds
it; reconciliation compares charges and fees with the balance transactions.

localstripe's balance transactions always carry fee 0, and always come at once; the
test server (tests/localstripe_plus.py) gives them Stripe's kind of fee (1.4 % + 25)
and, when asked, holds them back until the money "settles".
"""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select

from core.extensions import db
from core.money import Money
from ledger.models import EntryKind, LedgerPosting, LedgerTransaction
from ledger.services import PROCESSOR_FEES, RESERVE, balance, campaign_account, record
from payments.models import Pledge
from tests.factories import campaign_row, run_sweep
from tests.test_stripe_backend import _event, _post, _sign
from tests.test_stripe_outside_refunds import _charged_at_stripe, _reconciled

FEE_30 = (3000 * 140 + 5000) // 10000 + 25  # 67: what Stripe keeps of €30.00


@pytest.fixture
def stripe_fees(stripe_app, localstripe):
    def configure(**fees):
        response = requests.post(f"{localstripe}/_config/fees", json=fees, timeout=10)
        response.close()
        assert response.status_code == 200

    configure(percent_bp=140, fixed=25)
    yield configure
    configure()  # other tests expect localstripe's fee 0


def _settle_balances(localstripe) -> None:
    response = requests.post(f"{localstripe}/_config/balance/settle", timeout=10)
    response.close()
    assert response.status_code == 200


def _fee_entries(app, pledge_id) -> list[tuple[str, int]]:
    """The pledge's processor-fee transactions: (account, amount) of each posting."""
    from payments.privacy import public_reference

    with app.app_context():
        rows = db.session.execute(
            select(LedgerPosting.account, LedgerPosting.amount)
            .join(LedgerTransaction)
            .where(
                LedgerTransaction.kind == EntryKind.PROCESSOR_FEE,
                LedgerTransaction.reference == public_reference("fee", pledge_id),
            )
            .order_by(LedgerPosting.account)
        ).all()
    return [(account, int(amount)) for account, amount in rows]


def _pledge(app, pledge_id) -> Pledge:
    with app.app_context():
        return db.session.get_one(Pledge, pledge_id)


def _charge_updated(app, pledge: Pledge, event_id=None) -> str:
    charge = {"id": "ch_x", "object": "charge", "payment_intent": pledge.provider_charge_id}
    payload = _event("charge.updated", charge, event_id=event_id)
    return _post(app.test_client(), payload, _sign(payload)).get_json()["status"]


def test_a_fee_known_at_once_is_recorded_with_the_charge(stripe_app, stripe_fees):
    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    assert (charged.fee_amount, charged.fee_pending) == (FEE_30, False)
    campaign_id = campaign_row(app, slug).id
    assert _fee_entries(app, charged.id) == [
        (f"campaign:{campaign_id}", -FEE_30),
        (PROCESSOR_FEES, FEE_30),
    ]
    with app.app_context():
        assert balance(campaign_account(campaign_id), "EUR") == 3000 - FEE_30
    assert "No differences." in _reconciled(app)
    # A charge.updated event for it changes nothing.
    assert _charge_updated(app, charged) == "no fee pending"
    assert len(_fee_entries(app, charged.id)) == 2


def test_a_fee_stripe_reports_late_is_recorded_once_by_the_event(
    stripe_app, stripe_fees, localstripe
):
    app = stripe_app
    stripe_fees(percent_bp=140, fixed=25, lag=True)
    slug, [charged] = _charged_at_stripe(app)
    assert (charged.fee_amount, charged.fee_pending) == (0, True)
    assert _fee_entries(app, charged.id) == []
    # Not known yet: reconciliation does not call it a difference.
    assert "No differences." in _reconciled(app)
    assert _charge_updated(app, charged, event_id="evt_fee_early") == "fee not known yet"
    _settle_balances(localstripe)
    assert _charge_updated(app, charged, event_id="evt_fee_1") == "fee recorded"
    assert _charge_updated(app, charged, event_id="evt_fee_1") == "duplicate"
    assert _charge_updated(app, charged) == "no fee pending"
    after = _pledge(app, charged.id)
    assert (after.fee_amount, after.fee_pending) == (FEE_30, False)
    assert [amount for _a, amount in _fee_entries(app, charged.id)] == [-FEE_30, FEE_30]
    assert "No differences." in _reconciled(app)
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0
    del slug


def test_the_sweep_finds_a_late_fee_and_the_reserve_pays_what_a_paid_out_campaign_lacks(
    stripe_app, stripe_fees, localstripe
):
    app = stripe_app
    stripe_fees(percent_bp=140, fixed=25, lag=True)
    slug, [charged] = _charged_at_stripe(app)
    campaign_id = campaign_row(app, slug).id
    with app.app_context():
        account = campaign_account(campaign_id)
        held = balance(account, "EUR")
        record(  # the committee paid out all but €0.20
            EntryKind.DISBURSEMENT,
            campaign_id=campaign_id,
            reference="payout-fees-test",
            postings=[(account, Money(20 - held, "EUR")), ("payees:x", Money(held - 20, "EUR"))],
        )
        db.session.commit()
    run_sweep(app)  # not known yet: nothing recorded
    assert _fee_entries(app, charged.id) == []
    _settle_balances(localstripe)
    run_sweep(app)
    assert _fee_entries(app, charged.id) == sorted(
        [(f"campaign:{campaign_id}", -20), (RESERVE, -(FEE_30 - 20)), (PROCESSOR_FEES, FEE_30)]
    )
    with app.app_context():
        assert balance(account, "EUR") == 0
    run_sweep(app)  # and never twice
    assert len(_fee_entries(app, charged.id)) == 3
    assert "No differences." in _reconciled(app)


def test_reconciliation_names_a_fee_stripe_reports_and_the_ledger_lacks(
    stripe_app, stripe_fees, localstripe
):
    """The check can fail: once Stripe reports a fee, a ledger without it differs
    (until the event or the sweep records it)."""
    app = stripe_app
    stripe_fees(percent_bp=140, fixed=25, lag=True)
    _slug, [charged] = _charged_at_stripe(app)
    _settle_balances(localstripe)
    output = app.test_cli_runner().invoke(args=["ledger", "reconcile"]).output
    assert "fees differ" in output, output
    assert _charge_updated(app, charged) == "fee recorded"
    assert "No differences." in _reconciled(app)


def _fee_transaction(app, pledge_id) -> LedgerTransaction:
    from payments.privacy import public_reference

    with app.app_context():
        found = db.session.scalar(
            select(LedgerTransaction).where(
                LedgerTransaction.reference == public_reference("fee", pledge_id)
            )
        )
        assert found is not None
        db.session.expunge(found)
        return found


def test_the_sweep_records_each_late_fee_for_its_own_charge_only(
    stripe_app, stripe_fees, localstripe, monkeypatch
):
    """Two charges whose fees come late, €30 and €10: each fee lands on its own pledge
    and entry (campaign, counterparty, memo as for a fee known at once); the sweep
    asks for at most BATCH fees at a time; a provider that stops answering part-way
    keeps what was recorded before."""
    from payments import fees

    app = stripe_app
    stripe_fees(percent_bp=140, fixed=25, lag=True)
    slug, (first, second) = _charged_at_stripe(app, amounts=("30", "10"))
    campaign_id = campaign_row(app, slug).id
    _settle_balances(localstripe)
    backend = app.extensions["payment_backend"]
    real_fee, asked = backend.charge_fee, []

    def answers_once(charge_id):
        asked.append(charge_id)
        if len(asked) > 1:
            from payments.backends.base import BackendError

            raise BackendError("Stripe: APIConnectionError")
        return real_fee(charge_id)

    monkeypatch.setattr(backend, "charge_fee", answers_once)
    with app.app_context():
        assert fees.follow_pending_fees() == 1  # the first answered, then the provider failed
    monkeypatch.setattr(backend, "charge_fee", real_fee)
    recorded = [p for p in (_pledge(app, first.id), _pledge(app, second.id)) if not p.fee_pending]
    assert len(recorded) == 1  # kept, though the provider failed on the next one
    monkeypatch.setattr(fees, "BATCH", 1)
    with app.app_context():
        assert fees.follow_pending_fees() == 1
        assert fees.follow_pending_fees() == 0  # nothing left
    fee_10 = (1000 * 140 + 5000) // 10000 + 25  # 39
    assert _pledge(app, first.id).fee_amount == FEE_30
    assert _pledge(app, second.id).fee_amount == fee_10
    for pledge, fee in ((first, FEE_30), (second, fee_10)):
        entry = _fee_transaction(app, pledge.id)
        assert (entry.campaign_id, entry.counterparty, entry.memo) == (
            campaign_id,
            "payment processor",
            "Card processing fee",
        )
        assert [amount for _a, amount in _fee_entries(app, pledge.id)] == [-fee, fee]


def test_a_fee_is_recorded_once_when_two_requests_race(stripe_app, stripe_fees, localstripe):
    """The webhook and the sweep both learn the fee: the one whose guarded update
    finds it still pending records it; the other is told it already was."""
    from payments import fees

    app = stripe_app
    stripe_fees(percent_bp=140, fixed=25, lag=True)
    _slug, [charged] = _charged_at_stripe(app)
    with app.app_context():
        pledge = db.session.get_one(Pledge, charged.id)
        assert fees.record_fee(pledge, FEE_30) is True
        assert fees.record_fee(pledge, FEE_30) is False  # the loser, with a stale object
        db.session.commit()
    assert len(_fee_entries(app, charged.id)) == 2

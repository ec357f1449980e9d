"""Money that moves outside the app (issue 16): a refund made in Stripe's dashboard
reaches the ledger, the pledge and the campaign's totals through the signed
`charge.refunded` event, once, in any order; reconciliation then finds no difference.
Against a real localstripe; the events are signed as Stripe signs them."""

from __future__ import annotations

from sqlalchemy import func, select

from core.extensions import db
from core.money import Money
from ledger.models import LedgerPosting, LedgerTransaction
from ledger.services import RESERVE, balance, campaign_account
from payments.models import Pledge, PledgeEvent
from tests.factories import campaign_row, live_campaign, past_deadline, pledges, run_sweep
from tests.test_stripe_backend import (
    _browser_confirms,
    _card_page,
    _client,
    _event,
    _post,
    _sign,
    _start,
)


def _charged_at_stripe(app, amounts=("30",)) -> tuple[str, list[Pledge]]:
    """Pledges saved at localstripe, then charged by settlement at the deadline."""
    client = app.test_client()
    slug = live_campaign(app, funding_model="flexible")
    for amount in amounts:
        card_url = _start(app, client, slug, amount=amount)
        _card_page(client, card_url)
        assert _browser_confirms(app, pledges(app)[-1].provider_setup_id).status == "succeeded"
        assert client.get(card_url + "/return").status_code == 302
    past_deadline(app, campaign_row(app, slug).id)
    run_sweep(app)
    charged = pledges(app)
    assert [p.status for p in charged] == ["charged"] * len(amounts)
    return slug, charged


def _refund_in_dashboard(app, pledge: Pledge, amount: int) -> str:
    refund = _client(app).v1.refunds.create(
        params={"payment_intent": pledge.provider_charge_id, "amount": amount}
    )
    return refund.id


def _tell(app, pledge: Pledge, event_id=None):
    charge = {"id": "ch_x", "object": "charge", "payment_intent": pledge.provider_charge_id}
    payload = _event("charge.refunded", charge, event_id=event_id)
    return _post(app.test_client(), payload, _sign(payload))


def _pledge(app, pledge_id) -> Pledge:
    with app.app_context():
        return db.session.get_one(Pledge, pledge_id)


def _refund_entries(app, campaign_id) -> list[tuple[str, int]]:
    """The campaign's refund transactions on the ledger: (reference, amount returned)."""
    with app.app_context():
        rows = db.session.execute(
            select(LedgerTransaction.reference, func.sum(LedgerPosting.amount))
            .join(LedgerPosting)
            .where(
                LedgerTransaction.kind == "refund",
                LedgerTransaction.campaign_id == campaign_id,
                LedgerPosting.account == "supporters",
            )
            .group_by(LedgerTransaction.reference)
        ).all()
    return sorted((reference, int(amount)) for reference, amount in rows)


def _reconciled(app) -> str:
    """`flask ledger reconcile`, as far as this test's charge goes: localstripe is
    shared by the session, so it also holds other tests' charges, which this database
    rightly calls "charge for no pledge of ours"."""
    output = app.test_cli_runner().invoke(args=["ledger", "reconcile"]).output
    assert "1 in the ledger, 1 matched" in output, output
    for problem in ("amounts differ", "missing from the ledger", "no charge at the provider"):
        assert problem not in output, output
    return "No differences."


def test_a_refund_made_in_stripes_dashboard_reaches_the_ledger_once(stripe_app):
    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    campaign = campaign_row(app, slug)
    assert campaign.collected_amount == 3000
    _refund_in_dashboard(app, charged, 1000)
    first = _tell(app, charged, event_id="evt_refund_1")
    assert first.status_code == 200 and first.get_json()["status"] == "refund recorded"
    [(reference, amount)] = _refund_entries(app, campaign.id)
    assert amount == 1000
    # The same event again, and a later event for the same state: nothing twice.
    assert _tell(app, charged, event_id="evt_refund_1").get_json()["status"] == "duplicate"
    assert _tell(app, charged).get_json()["status"] == "nothing new"
    assert _refund_entries(app, campaign.id) == [(reference, 1000)]
    pledge = _pledge(app, charged.id)
    assert pledge.status == "charged"  # part of it is still collected
    assert campaign_row(app, slug).collected_amount == 2000
    with app.app_context():
        assert balance(campaign_account(campaign.id), "EUR") == 2000
        kinds = db.session.scalars(
            select(PledgeEvent.kind).where(PledgeEvent.pledge_id == charged.id)
        ).all()
    assert kinds.count("refunded_elsewhere") == 1
    assert "No differences." in _reconciled(app)
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0


def test_events_out_of_order_reach_the_same_state_and_a_full_refund_ends_the_pledge(
    stripe_app,
):
    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    campaign_id = campaign_row(app, slug).id
    _refund_in_dashboard(app, charged, 1000)
    _refund_in_dashboard(app, charged, 2000)  # the rest
    # The second refund's event arrives first: it finds both refunds and records both.
    assert _tell(app, charged, event_id="evt_second").get_json()["status"] == "refund recorded"
    assert _tell(app, charged, event_id="evt_first").get_json()["status"] == "nothing new"
    assert sorted(a for _r, a in _refund_entries(app, campaign_id)) == [1000, 2000]
    assert _pledge(app, charged.id).status == "refunded"
    assert campaign_row(app, slug).collected_amount == 0
    assert "No differences." in _reconciled(app)


def test_a_refund_after_the_money_was_paid_out_is_covered_by_the_reserve(stripe_app):
    """The campaign never goes below zero and the entry is never refused: what the
    campaign no longer holds comes from the platform's reserve, on the public ledger."""
    from ledger.models import EntryKind
    from ledger.services import record

    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    campaign_id = campaign_row(app, slug).id
    with app.app_context():
        account = campaign_account(campaign_id)
        held = balance(account, "EUR")
        record(  # the committee paid out all but €5
            EntryKind.DISBURSEMENT,
            campaign_id=campaign_id,
            reference="payout-test",
            postings=[(account, Money(500 - held, "EUR")), ("payees:x", Money(held - 500, "EUR"))],
        )
        db.session.commit()
    _refund_in_dashboard(app, charged, 2000)
    assert _tell(app, charged).get_json()["status"] == "refund recorded"
    with app.app_context():
        assert balance(account, "EUR") == 0
        assert balance(RESERVE, "EUR") == -1500
    [(_reference, amount)] = _refund_entries(app, campaign_id)
    assert amount == 2000
    assert "No differences." in _reconciled(app)


def test_a_refund_event_for_a_charge_that_is_not_ours_changes_nothing(stripe_app):
    app = stripe_app
    payload = _event("charge.refunded", {"id": "ch_other", "payment_intent": "pi_not_ours"})
    response = _post(app.test_client(), payload, _sign(payload))
    assert response.get_json()["status"] == "ignored"
    forged = _event("charge.refunded", {"id": "ch_other", "payment_intent": "pi_not_ours"})
    assert _post(app.test_client(), forged, "t=1,v1=00").status_code == 400


# ---- Disputes (chargebacks) ---------------------------------------------------------------
# localstripe has no disputes (GET /v1/disputes/… answers 404), so what Stripe would
# answer for the dispute is stubbed; the events themselves are signed and posted.


def _stub_dispute(app, monkeypatch, charged: Pledge, status: str, movements):
    from payments.backends.base import DisputeMovement, ProviderDispute

    state = ProviderDispute(
        id="dp_test_1",
        charge_id=charged.provider_charge_id,
        amount=3000,
        currency="EUR",
        status=status,
        reason="fraudulent",
        movements=tuple(DisputeMovement(*m) for m in movements),
    )
    monkeypatch.setattr(app.extensions["payment_backend"], "dispute", lambda _id: state)


def _dispute_event(app, event_type, event_id=None):
    payload = _event(event_type, {"id": "dp_test_1", "object": "dispute"}, event_id=event_id)
    return _post(app.test_client(), payload, _sign(payload)).get_json()["status"]


def _dispute_entries(app, campaign_id) -> list[dict[str, int]]:
    with app.app_context():
        rows = db.session.execute(
            select(LedgerTransaction.reference, LedgerPosting.account, LedgerPosting.amount)
            .join(LedgerPosting)
            .where(
                LedgerTransaction.kind == "dispute", LedgerTransaction.campaign_id == campaign_id
            )
            .order_by(LedgerTransaction.id, LedgerPosting.id)
        ).all()
    found: dict[str, dict[str, int]] = {}
    for reference, account, amount in rows:
        found.setdefault(reference, {})[account] = amount
    return list(found.values())


def test_a_chargeback_and_its_reversal_follow_the_money_in_any_order(stripe_app, monkeypatch):
    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    campaign_id = campaign_row(app, slug).id
    account = f"campaign:{campaign_id}"
    _stub_dispute(app, monkeypatch, charged, "needs_response", [])
    assert _dispute_event(app, "charge.dispute.created") == "recorded"
    assert _dispute_entries(app, campaign_id) == []  # no money moved yet
    # Stripe takes the €30 and a €15 fee.
    _stub_dispute(app, monkeypatch, charged, "needs_response", [("txn_w", -3000, 1500)])
    assert _dispute_event(app, "charge.dispute.funds_withdrawn", "evt_w") == "recorded"
    assert _dispute_event(app, "charge.dispute.funds_withdrawn", "evt_w") == "duplicate"
    with app.app_context():
        held_after = balance(account, "EUR")
    [withdrawal] = _dispute_entries(app, campaign_id)
    assert withdrawal["supporters"] == 3000 and withdrawal["processor:fees"] == 1500
    assert sum(withdrawal.values()) == 0
    assert held_after >= 0 and campaign_row(app, slug).collected_amount == 0
    assert _pledge(app, charged.id).status == "disputed"
    # The bank gives it back; the "won" closing event arrives before the reinstatement's.
    _stub_dispute(app, monkeypatch, charged, "won", [("txn_w", -3000, 1500), ("txn_r", 3000, 0)])
    assert _dispute_event(app, "charge.dispute.closed") == "recorded"
    assert _dispute_event(app, "charge.dispute.funds_reinstated") == "nothing new"
    withdrawal, reinstatement = _dispute_entries(app, campaign_id)
    assert reinstatement["supporters"] == -3000 and sum(reinstatement.values()) == 0
    assert campaign_row(app, slug).collected_amount == 3000
    with app.app_context():
        kinds = db.session.scalars(
            select(PledgeEvent.kind).where(PledgeEvent.pledge_id == charged.id)
        ).all()
        # The fee stays with the processor: the campaign holds €15 less than before.
        assert balance(account, "EUR") == held_after + reinstatement.get(account, 0)
    for step in ("dispute_opened", "charged_back", "charge_reinstated", "dispute_closed"):
        assert kinds.count(step) == 1, step
    assert _pledge(app, charged.id).status == "charged"  # the bank gave it back
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0


def test_a_chargeback_after_the_payout_is_covered_by_the_reserve_and_repaid_first(
    stripe_app, monkeypatch
):
    from ledger.models import EntryKind
    from ledger.services import record

    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    campaign_id = campaign_row(app, slug).id
    account = f"campaign:{campaign_id}"
    with app.app_context():
        held = balance(account, "EUR")
        record(
            EntryKind.DISBURSEMENT,
            campaign_id=campaign_id,
            reference="payout-all",
            postings=[(account, Money(-held, "EUR")), ("payees:y", Money(held, "EUR"))],
        )
        db.session.commit()
    # Out of order: the reinstatement's event comes first, and Stripe already lists both.
    _stub_dispute(app, monkeypatch, charged, "won", [("txn_r", 3000, 0), ("txn_w", -3000, 1500)])
    assert _dispute_event(app, "charge.dispute.funds_reinstated") == "recorded"
    assert _dispute_event(app, "charge.dispute.funds_withdrawn") == "nothing new"
    withdrawal, reinstatement = _dispute_entries(app, campaign_id)
    assert withdrawal[RESERVE] == -4500 and account not in withdrawal
    assert reinstatement[RESERVE] == 3000 and account not in reinstatement
    with app.app_context():
        assert balance(account, "EUR") == 0
        assert balance(RESERVE, "EUR") == -1500  # the fee the platform covered


def _moderator(app):
    from accounts.models import User
    from tests.factories import register

    client = app.test_client()
    register(client, email="ops@example.org", name="Ops")
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "ops@example.org"))
        user.is_moderator = True
        db.session.commit()
    return client


def test_operators_see_a_dispute_and_send_their_evidence_once(stripe_app, monkeypatch):
    """localstripe has no disputes: what Stripe answers to the evidence (the dispute,
    now under review) is stubbed like the dispute itself; what is asserted is what
    operators see and what reaches the processor."""
    from datetime import UTC, datetime

    from payments.backends.base import BackendError, ProviderDispute
    from tests.factories import submit

    app = stripe_app
    slug, [charged] = _charged_at_stripe(app)
    _stub_dispute(app, monkeypatch, charged, "needs_response", [("txn_w", -3000, 1500)])
    assert _dispute_event(app, "charge.dispute.created") == "recorded"
    stranger = app.test_client()
    assert stranger.get("/moderation/disputes").status_code in (302, 401, 403)
    ops = _moderator(app)
    listing = ops.get("/moderation/disputes").get_data(as_text=True)
    assert "fraudulent" in listing and "needs_response" in listing and "€30.00" in listing
    assert "ops@example.org" not in listing and "sup@example.org" not in listing
    with app.app_context():
        from payments.models import Dispute

        row = db.session.scalar(select(Dispute))
        answer = f"/moderation/disputes/{row.id}"
    sent: list[tuple[str, str]] = []

    def unreachable(dispute_id, explanation):
        raise BackendError("Stripe: APIConnectionError")

    monkeypatch.setattr(app.extensions["payment_backend"], "submit_dispute_evidence", unreachable)
    empty = submit(ops, answer, {"explanation": ""})
    assert empty.status_code == 422
    failed = submit(ops, answer, {"explanation": "Pledged on 1 May."}, follow_redirects=True)
    assert "did not take the evidence" in failed.get_data(as_text=True)

    def accepted(dispute_id, explanation):
        sent.append((dispute_id, explanation))
        return ProviderDispute(
            id=dispute_id,
            charge_id=charged.provider_charge_id,
            amount=3000,
            currency="EUR",
            status="under_review",
            reason="fraudulent",
            movements=(),
            evidence_due_by=datetime(2027, 1, 1, tzinfo=UTC),
        )

    monkeypatch.setattr(app.extensions["payment_backend"], "submit_dispute_evidence", accepted)
    text = "The supporter pledged to the strike fund on 1 May and was charged at its deadline."
    done = submit(ops, answer, {"explanation": text}, follow_redirects=True)
    assert "Evidence sent." in done.get_data(as_text=True)
    assert sent == [("dp_test_1", text)]
    with app.app_context():
        row = db.session.get_one(Dispute, row.id)
        assert row.status == "under_review" and row.evidence_submitted_at is not None
    # Sent once: the form is gone, and a late second tab's post sends nothing.
    again = submit(ops, answer, {"explanation": "again"}, form_page="/moderation/disputes")
    assert again.status_code == 302 and sent == [("dp_test_1", text)]
    del slug

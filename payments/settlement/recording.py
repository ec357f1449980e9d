"""Recording the provider's answers: the pledge's move, its event, the ledger, the
collected total and the email, in one transaction that only the claim's winner
writes. Money that moved is never lost (`follow_lost_charge`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select, update

from campaigns.models import Campaign
from campaigns.periods import Period
from core.clock import utcnow
from core.extensions import changed, db
from core.jobs import JobFailure
from ledger import services as ledger
from ledger.models import EntryKind
from payments import emails, lifecycle
from payments.backends import get_backend
from payments.backends.base import ChargeResult
from payments.models import Pledge, PledgeStatus
from payments.privacy import public_counterparty, public_reference
from payments.settlement.claiming import Claim

log = logging.getLogger(__name__)


def _charged(result: ChargeResult, now) -> dict[str, Any]:
    """What a pledge records of the charge that took its money, however it was found."""
    return {
        "provider_charge_id": result.charge_id,
        "charged_amount": result.amount,
        "fee_amount": result.fee,
        "fee_pending": result.fee_pending,
        "charged_at": now,
        "provider_action_id": None,
    }


def _outcome_of(pledge: Pledge, result: ChargeResult, now) -> tuple[str, dict[str, Any]]:
    """The event to move the pledge by, and the values it sets, for this answer."""
    window_end = (pledge.campaign.decided_at or now) + timedelta(
        seconds=current_app.config["RETRY_WINDOW"]
    )
    if result.status == "succeeded":
        return "charged", {**_charged(result, now), "failure_code": ""}
    if result.status == "requires_action":
        return "needs_authentication", {
            "failure_code": result.decline_code or "authentication_required",
            # Stripe.js can finish this very charge in the supporter's browser.
            "provider_action_id": result.charge_id if result.next_action else None,
            "retry_until": func.coalesce(Pledge.retry_until, window_end),
        }
    if pledge.retry_until is not None and now >= pledge.retry_until:
        return "dropped", {"failure_code": result.decline_code}
    return "failed", {
        "failure_code": result.decline_code,
        "retry_until": func.coalesce(Pledge.retry_until, window_end),
        "next_reminder_at": now + timedelta(seconds=current_app.config["REMINDER_INTERVAL"]),
    }


def record_result(claim: Claim, result: ChargeResult) -> str:
    """Apply the provider's answer in one transaction; returns the outcome. Commits.

    Only the transaction whose guarded move finds the pledge still `charging` under
    this claim's key records anything, ledger included.
    """
    pledge = db.session.get(Pledge, claim.pledge_id)
    assert pledge is not None
    outcome, values = _outcome_of(pledge, result, utcnow())
    moved = lifecycle.move_pledge(
        pledge,
        f"charge_{outcome}",
        values=values,
        guard=(Pledge.charge_key == claim.charge_key,),
        amount=result.amount,
        detail=result.decline_code or "",
    )
    if moved is None:
        db.session.rollback()
        if result.status == "succeeded":
            return follow_lost_charge(claim.pledge_id, claim.charge_key, result)
        return "already_recorded"
    if outcome == "charged":
        ledger.record_many(_ledger_entries(pledge, pledge.campaign_id, result))
        _add_collected(pledge.campaign_id, result.amount, pledge.period)
    emails.queue_outcome(pledge, outcome)
    db.session.commit()
    return outcome


def record_charges(pairs: list[tuple[Claim, ChargeResult]]) -> int:
    """Record many successful charges in one transaction, in a few statements: the
    pledges' guarded move, their events, the ledger, the campaign's collected total
    and the receipts. Returns how many this transaction won. Commits."""
    if not pairs:
        return 0
    now = utcnow()
    by_id = {claim.pledge_id: (claim, result) for claim, result in pairs}
    winners = _still_claimed(by_id)
    losers = [pid for pid in by_id if pid not in winners]
    if losers:
        # Settled one by one: each lost charge is found recorded, or followed (and
        # refunded at once: none of them counts as charged here).
        db.session.rollback()
        for pid in losers:
            claim, result = by_id[pid]
            follow_lost_charge(pid, claim.charge_key, result)
        return record_charges([by_id[pid] for pid in winners])
    try:
        lifecycle.move_each(
            "charge_charged",
            [
                {
                    "pid": pid,
                    "key": by_id[pid][0].charge_key,
                    "b_charge": by_id[pid][1].charge_id,
                    "b_amount": by_id[pid][1].amount,
                    "b_fee": by_id[pid][1].fee,
                    "b_pending": by_id[pid][1].fee_pending,
                }
                for pid in winners
            ],
            guard=(Pledge.__table__.c.charge_key == bindparam("key"),),
            values={
                "provider_charge_id": bindparam("b_charge"),
                "charged_amount": bindparam("b_amount"),
                "fee_amount": bindparam("b_fee"),
                "fee_pending": bindparam("b_pending"),
                "charged_at": now,
                "failure_code": "",
            },
            amount=lambda p: p["b_amount"],
        )
    except lifecycle.PartialMove:
        # Someone recorded part of the group meanwhile (SQLite has no row locks to stop
        # them): start again one by one, each guarded on its own.
        db.session.rollback()
        return sum(record_result(*by_id[pid]) == "charged" for pid in winners)
    pledges = db.session.scalars(
        select(Pledge).where(Pledge.id.in_(winners)).order_by(Pledge.id)
    ).all()
    entries: list[ledger.Entry] = []
    collected: dict[tuple[int, int | None], int] = defaultdict(int)
    for pledge in pledges:
        result = by_id[pledge.id][1]
        entries.extend(_ledger_entries(pledge, pledge.campaign_id, result))
        collected[(pledge.campaign_id, pledge.period)] += result.amount
    ledger.record_many(entries)
    for (campaign_id, period), amount in collected.items():
        _add_collected(campaign_id, amount, period)
    emails.queue_outcomes(pledges, "charged")
    db.session.commit()
    return len(pledges)


def _still_claimed(by_id: dict[int, tuple[Claim, ChargeResult]]) -> list[int]:
    """Lock the rows (PostgreSQL), then keep those still charging under their claim's
    key: the ones this transaction may record."""
    current = db.session.execute(
        select(Pledge.id, Pledge.status, Pledge.charge_key)
        .where(Pledge.id.in_(by_id))
        .with_for_update()
    ).all()
    return [
        row.id
        for row in current
        if row.status == PledgeStatus.CHARGING and row.charge_key == by_id[row.id][0].charge_key
    ]


def _add_collected(campaign_id: int, amount: int, period: int | None = None) -> None:
    """The campaign's collected total, and its period's for a period's charge (each
    equals the sum of the ledger's charges for it)."""
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(collected_amount=Campaign.collected_amount + amount)
        .execution_options(synchronize_session=False)
    )
    if period is not None:
        db.session.execute(
            update(Period)
            .where(Period.campaign_id == campaign_id, Period.number == period)
            .values(collected_amount=Period.collected_amount + amount)
            .execution_options(synchronize_session=False)
        )


def follow_lost_charge(pledge_id: int, charge_key: str | None, result: ChargeResult) -> str:
    """The provider charged, but the pledge is no longer `charging` under the key the
    charge was made with (kept on the pledge once followed). Money that moved must
    never vanish: if this charge is already recorded, there is nothing to do; otherwise
    the ledger and the pledge follow the money (the charge, its fee and the collected
    total are recorded) and, since the pledge had left settlement, the charge is
    refunded at once, in the ledger too; the supporter and operators are told.
    Commits. Returns "already_recorded", "followed" or "refunded_extra"."""
    from payments.refunds import refund

    pledge = db.session.get(Pledge, pledge_id)
    assert pledge is not None
    db.session.refresh(pledge)
    if pledge.provider_charge_id == result.charge_id:
        return "already_recorded"
    was = pledge.status
    if was in (PledgeStatus.CHARGED, PledgeStatus.REFUNDED, PledgeStatus.CHARGING):
        # A second charge for one pledge: it never belonged to it. Refund it at the
        # provider under a key of its own and tell operators (reconciliation lists it).
        get_backend().refund(result.charge_id or "", result.charged, f"extra-{result.charge_id}")
        _tell_operators(pledge, f"second charge {result.charge_id} refunded at the provider")
        db.session.commit()
        return "refunded_extra"
    moved = lifecycle.move_pledge(
        pledge,
        "charge_recorded_late",
        values={**_charged(result, utcnow()), "charge_key": charge_key},
        guard=(Pledge.status == was,),
        amount=result.amount,
        detail=result.charge_id or "",
    )
    if moved is None:
        db.session.rollback()
        # It moved again meanwhile: look again.
        return follow_lost_charge(pledge_id, charge_key, result)
    ledger.record_many(_ledger_entries(pledge, pledge.campaign_id, result))
    _add_collected(pledge.campaign_id, result.amount, pledge.period)
    if result.fee:
        # The supporter gets everything back and the campaign never paid for a charge
        # it should not have had: the platform covers the processor's fee.
        fee = result.fee_money
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=pledge.campaign_id,
            reference=public_reference("fee-cover", pledge.id),
            postings=[(ledger.PLATFORM, -fee), (ledger.campaign_account(pledge.campaign_id), fee)],
            counterparty="platform",
            memo="The platform covers the fee of a charge refunded at once",
        )
    db.session.commit()
    db.session.refresh(pledge)
    refund(pledge, "Charged after the pledge had left settlement; refunded at once")
    _tell_operators(pledge, f"charge recorded after the pledge was {was}; refunded")
    emails.queue_outcome(pledge, "refunded_at_once")
    db.session.commit()
    log.error("settlement: pledge %s was %s when its charge was recorded", pledge.id, was)
    return "followed"


def record_authenticated(pledge_id: int, result: ChargeResult) -> str:
    """The supporter's bank had its say on a charge that waited for them (3-D Secure).
    The return page and Stripe's webhook both tell it, in any order, any number of
    times: the first to find the pledge still waiting records it, exactly as
    settlement records a charge (ledger, collected total, receipt); the others find it
    recorded (the move's source state is the guard). A charge that succeeded after the
    pledge went elsewhere (dropped at the end of the window, or charged by another
    attempt) is followed like any lost charge. Commits. Returns "charged", "failed",
    "waiting" or what follow_lost_charge says."""
    pledge = db.session.get(Pledge, pledge_id)
    assert pledge is not None
    if result.status == "succeeded":
        moved = lifecycle.move_pledge(
            pledge,
            "charge_authenticated",
            values={**_charged(result, utcnow()), "failure_code": ""},
            # Any payment of ours that succeeded while the pledge waits is its charge,
            # even an older one finished in a tab left open: a newer one that succeeds
            # too finds the pledge charged and is refunded (follow_lost_charge).
            amount=result.amount,
            detail=result.charge_id or "",
        )
        if moved is None:
            db.session.rollback()
            return follow_lost_charge(pledge.id, pledge.charge_key, result)
        ledger.record_many(_ledger_entries(pledge, pledge.campaign_id, result))
        _add_collected(pledge.campaign_id, result.amount, pledge.period)
        emails.queue_outcome(pledge, "charged")
        db.session.commit()
        return "charged"
    if result.status in ("requires_action", "processing"):
        return "waiting"
    # Authentication failed, or the bank refused: the pledge still waits for the
    # supporter (another try, or another card) until the retry window ends.
    cleared = changed(
        update(Pledge)
        .where(Pledge.id == pledge.id, Pledge.provider_action_id == result.charge_id)
        .values(provider_action_id=None, failure_code=result.decline_code)
        .execution_options(synchronize_session=False)
    )
    if not cleared:
        db.session.rollback()
        return "already_recorded"
    lifecycle.note(pledge.id, "authentication_failed", detail=result.decline_code)
    db.session.commit()
    return "failed"


def _tell_operators(pledge: Pledge, what: str) -> None:
    """Operators learn of money that needed a person's eyes (`flask failed-jobs`, and
    OPERATOR_EMAIL when set); the record names our pledge id only."""
    db.session.add(
        JobFailure(job="settlement.follow_lost_charge", arguments=f"({pledge.id},)", error=what)
    )
    emails.tell_operators(f"Counterfund: pledge {pledge.id} needs a look", what)


def _ledger_entries(pledge: Pledge, campaign_id: int, result: ChargeResult) -> list[ledger.Entry]:
    account = ledger.campaign_account(campaign_id)
    amount = result.charged
    entries = [
        ledger.Entry(
            EntryKind.PLEDGE_CHARGE,
            campaign_id,
            public_reference("charge", pledge.id),
            ((ledger.SUPPORTERS, -amount), (account, amount)),
            public_counterparty(pledge),
            f"Pledge charged for period {pledge.period}"
            if pledge.period
            else "Pledge charged at the deadline",
        )
    ]
    if result.fee:
        fee = result.fee_money
        entries.append(
            ledger.Entry(
                EntryKind.PROCESSOR_FEE,
                campaign_id,
                public_reference("fee", pledge.id),
                ((account, -fee), (ledger.PROCESSOR_FEES, fee)),
                "payment processor",
                f"Card processing fee, period {pledge.period}"
                if pledge.period
                else "Card processing fee",
            )
        )
    return entries

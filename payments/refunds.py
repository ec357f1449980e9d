"""Refunding a charged pledge: once, at the provider and in the ledger.

The refund's idempotency key is our own (`refund-<pledge id>`): calling the provider
twice refunds once, so a crash between the call and our commit is repaired by simply
running the refund again.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from campaigns.models import Campaign
from campaigns.notifications import tell_committee
from campaigns.periods import Period
from core.extensions import db
from core.money import Money
from ledger import services as ledger
from ledger.models import EntryKind
from payments import emails, lifecycle
from payments.backends import get_backend
from payments.models import Pledge, PledgeEvent, PledgeStatus
from payments.privacy import public_counterparty, public_reference
from payments.services import PledgeError


def _memo(pledge: Pledge, reason: str) -> str:
    """The refund's public memo: the reason, and the period a period's charge was for."""
    memo = reason or "Refund"
    if pledge.period:
        memo = f"{memo[:480]} (period {pledge.period})"
    return memo[:500]


def refund(pledge: Pledge, reason: str = "") -> str:
    """Refund a charged pledge in full (the processor keeps its fee, as Stripe does).
    Returns the provider's refund id. Commits."""
    if pledge.status == PledgeStatus.REFUNDED:
        raise PledgeError(_l("This pledge was already refunded."))
    if pledge.status != PledgeStatus.CHARGED or not pledge.provider_charge_id:
        raise PledgeError(_l("Only charged pledges can be refunded."))
    amount = pledge.charged
    assert amount is not None
    account = ledger.campaign_account(pledge.campaign_id)
    # Checked before the money moves at the provider. (Should a disbursement drain the
    # balance in the instant between, the ledger refuses the entry below and the daily
    # reconciliation lists the refund for an operator.)
    if ledger.balance(account, pledge.currency) < amount.amount:
        raise PledgeError(_l("The campaign no longer holds enough to refund this pledge."))
    refund_id = get_backend().refund(pledge.provider_charge_id, amount, f"refund-{pledge.id}")
    moved = lifecycle.move_pledge(pledge, "refunded", amount=amount.amount, detail=refund_id)
    if moved is None:
        db.session.rollback()
        raise PledgeError(_l("This pledge was already refunded."))
    ledger.record(
        EntryKind.REFUND,
        campaign_id=pledge.campaign_id,
        reference=public_reference("refund", pledge.id),
        postings=[(account, -amount), (ledger.SUPPORTERS, amount)],
        counterparty=public_counterparty(pledge),
        memo=_memo(pledge, reason),
    )
    _lower_collected(pledge, amount.amount)
    db.session.commit()
    return refund_id


# ---- Money returned outside the app (the processor's dashboard) ----------------------


def _refunds_recorded(pledge: Pledge) -> set[str]:
    """Provider refund ids this pledge's history already accounts for: our own refund
    (its `refunded` event) and those followed from the processor."""
    return set(
        db.session.scalars(
            select(PledgeEvent.detail).where(
                PledgeEvent.pledge_id == pledge.id,
                PledgeEvent.kind.in_(("refunded", "refunded_elsewhere")),
            )
        )
    )


def outside_refund_reference(pledge_id: int, refund_id: str) -> str:
    return public_reference("refund", pledge_id, refund_id)


def _taken_back(
    campaign_id: int, amount: Money, to: str = ledger.SUPPORTERS
) -> list[tuple[str, Money]]:
    """Postings that pay `amount` out of a campaign (to the supporter, or another
    account): from the campaign while it holds enough, the rest from the platform's
    reserve (a campaign never goes below zero, and an entry that must be written is
    never refused)."""
    account = ledger.campaign_account(campaign_id)
    from_campaign = min(max(ledger.balance(account, amount.currency), 0), amount.amount)
    postings = [(to, amount)]
    if from_campaign:
        postings.append((account, Money(-from_campaign, amount.currency)))
    if amount.amount > from_campaign:
        postings.append((ledger.RESERVE, Money(from_campaign - amount.amount, amount.currency)))
    return postings


def follow_provider_refunds(pledge: Pledge) -> int:
    """Record every refund the processor holds for this pledge's charge that we did
    not make (a refund issued in Stripe's dashboard): a compensating ledger entry
    each, the campaign's (and period's) collected total lowered, the pledge moved to
    refunded once all of it is returned, the committee and operators told. Reads the
    provider's current state, so a repeated, late or out-of-order event records each
    refund once. Returns how much was newly recorded, in minor units. Flushes."""
    if pledge.provider_charge_id is None or pledge.charged_amount is None:
        return 0
    found = get_backend().refunds_of(pledge.provider_charge_id)
    known = _refunds_recorded(pledge)
    new = [
        r
        for r in found
        if r.status == "succeeded" and r.currency == pledge.currency and r.id not in known
    ]
    for refund in new:
        amount = Money(refund.amount, refund.currency)
        ledger.record(
            EntryKind.REFUND,
            campaign_id=pledge.campaign_id,
            reference=outside_refund_reference(pledge.id, refund.id),
            postings=_taken_back(pledge.campaign_id, amount),
            counterparty=public_counterparty(pledge),
            memo=_memo(pledge, "Refunded at the payment processor"),
        )
        lifecycle.note(pledge.id, "refunded_elsewhere", amount=refund.amount, detail=refund.id)
        _lower_collected(pledge, refund.amount)
    total = sum(r.amount for r in found if r.status == "succeeded")
    if new and total >= pledge.charged_amount and pledge.status == PledgeStatus.CHARGED:
        lifecycle.move_pledge(pledge, "refunded", amount=total, detail=new[-1].id)
    db.session.flush()
    recorded = sum(r.amount for r in new)
    if recorded:
        emails.tell_operators(
            "A refund was made at the payment processor",
            f"Pledge {pledge.public_id}: {Money(recorded, pledge.currency)} refunded outside "
            "Counterfund; recorded on the ledger.",
        )
        tell_committee(
            pledge.campaign, "refunded-elsewhere", amount=Money(recorded, pledge.currency)
        )
    return recorded


def _lower_collected(pledge: Pledge, amount: int) -> None:
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == pledge.campaign_id)
        .values(collected_amount=Campaign.collected_amount - amount)
        .execution_options(synchronize_session=False)
    )
    if pledge.period is not None:
        db.session.execute(
            update(Period)
            .where(Period.campaign_id == pledge.campaign_id, Period.number == pledge.period)
            .values(collected_amount=Period.collected_amount - amount)
            .execution_options(synchronize_session=False)
        )

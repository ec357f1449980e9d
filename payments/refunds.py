"""Refunding a charged pledge: once, at the provider and in the ledger.

The refund's idempotency key is our own (`refund-<pledge id>`): calling the provider
twice refunds once, so a crash between the call and our commit is repaired by simply
running the refund again.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import update

from campaigns.models import Campaign
from campaigns.periods import Period
from core.extensions import db
from ledger import services as ledger
from ledger.models import EntryKind
from payments import lifecycle
from payments.backends import get_backend
from payments.models import Pledge, PledgeStatus
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
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == pledge.campaign_id)
        .values(collected_amount=Campaign.collected_amount - amount.amount)
        .execution_options(synchronize_session=False)
    )
    if pledge.period is not None:
        db.session.execute(
            update(Period)
            .where(Period.campaign_id == pledge.campaign_id, Period.number == pledge.period)
            .values(collected_amount=Period.collected_amount - amount.amount)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return refund_id

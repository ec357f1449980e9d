"""Processing fees that come after the charge.

Stripe says what it kept of a charge on the charge's balance transaction, which can
come after the charge itself (until the money settles). A charge recorded before then
is marked `fee_pending`; its fee is recorded when Stripe has it, told by the
`charge.updated` webhook or found by the sweep, whichever comes first, as the same
`processor_fee` transaction a fee known at once would have been (its reference is the
pledge's, so it can only ever be written once). If the campaign has already paid out
what the fee needs, the rest comes from the platform's reserve, as for refunds.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from core.extensions import changed, db
from core.money import Money
from ledger import services as ledger
from ledger.models import EntryKind
from payments.backends import get_backend
from payments.backends.base import BackendError
from payments.models import Pledge
from payments.privacy import public_reference
from payments.refunds import _taken_back

log = logging.getLogger(__name__)

# Pledges looked at per sweep: each costs one call to the provider.
BATCH = 200


def record_fee(pledge: Pledge, fee: int) -> bool:
    """Record the fee of a charge whose fee was pending; False when another request
    recorded it first. Flushes; the caller commits."""
    claimed = changed(
        update(Pledge)
        .where(Pledge.id == pledge.id, Pledge.fee_pending.is_(True))
        .values(fee_pending=False, fee_amount=fee)
        .execution_options(synchronize_session=False)
    )
    if not claimed:
        return False
    if fee:
        money = Money(fee, pledge.currency)
        ledger.record(
            EntryKind.PROCESSOR_FEE,
            campaign_id=pledge.campaign_id,
            reference=public_reference("fee", pledge.id),
            postings=_taken_back(pledge.campaign_id, money, to=ledger.PROCESSOR_FEES),
            counterparty="payment processor",
            memo=f"Card processing fee, period {pledge.period}"
            if pledge.period
            else "Card processing fee",
        )
    return True


def follow_fee(pledge: Pledge) -> str:
    """Ask the provider for a pending fee and record it if it is known. Flushes."""
    if not pledge.fee_pending or not pledge.provider_charge_id:
        return "no fee pending"
    fee = get_backend().charge_fee(pledge.provider_charge_id)
    if fee is None:
        return "fee not known yet"
    return "fee recorded" if record_fee(pledge, fee) else "fee already recorded"


def follow_pending_fees() -> int:
    """The sweep's part: every charge whose fee is still pending, asked once more.
    Returns how many fees were recorded. Commits."""
    pledges = db.session.scalars(
        select(Pledge)
        .where(Pledge.fee_pending.is_(True), Pledge.provider_charge_id.is_not(None))
        .order_by(Pledge.charged_at)
        .limit(BATCH)
    ).all()
    recorded = 0
    for pledge in pledges:
        try:
            recorded += follow_fee(pledge) == "fee recorded"
        except BackendError:
            log.warning("fees: the provider did not answer; the next sweep asks again")
            break
    db.session.commit()
    return recorded

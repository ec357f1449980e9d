"""Disputes (chargebacks): a supporter's bank takes a charge back, and may give it back.

Every `charge.dispute.*` event makes us read the dispute from the processor and follow
what it says: each movement of money it lists (a withdrawal with its fee, a
reinstatement) becomes one ledger transaction keyed by the movement's id, so
duplicated and out-of-order events reach the same ledger. A withdrawal takes what the
campaign holds and the rest from the platform's reserve (as for refunds made outside
the app: payments.refunds._taken_back); a reinstatement gives back to each what it
gave. The pledge's history records the dispute's steps; its collected total follows
the money. The committee and the operators are told of each step."""

from __future__ import annotations

from sqlalchemy import select

from campaigns.notifications import tell_committee
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from ledger import services as ledger
from ledger.models import EntryKind, LedgerTransaction
from payments import emails, lifecycle
from payments.backends import get_backend
from payments.backends.base import DisputeMovement, ProviderDispute
from payments.models import Dispute, Pledge, PledgeEvent
from payments.privacy import public_counterparty, public_reference
from payments.refunds import _lower_collected, _taken_back

STEPS = {
    "charge.dispute.created": "dispute_opened",
    "charge.dispute.closed": "dispute_closed",
}


def _noted(pledge: Pledge, kind: str, detail: str) -> bool:
    return (
        db.session.scalar(
            select(PledgeEvent.id).where(
                PledgeEvent.pledge_id == pledge.id,
                PledgeEvent.kind == kind,
                PledgeEvent.detail == detail,
            )
        )
        is not None
    )


def _recorded(reference: str) -> LedgerTransaction | None:
    return db.session.scalar(
        select(LedgerTransaction).where(LedgerTransaction.reference == reference)
    )


def _withdrawn(pledge: Pledge, dispute: ProviderDispute, movement: DisputeMovement) -> None:
    amount = Money(-movement.amount + movement.fee, dispute.currency)  # taken, with the fee
    taken = Money(-movement.amount, dispute.currency)
    postings = _taken_back(pledge.campaign_id, amount)
    # The bank gets the disputed amount; the processor keeps its fee.
    postings = [(a, m) for a, m in postings if a != ledger.SUPPORTERS]
    postings += [(ledger.SUPPORTERS, taken)]
    if movement.fee:
        postings.append((ledger.PROCESSOR_FEES, Money(movement.fee, dispute.currency)))
    _record_movement(
        pledge,
        movement,
        postings,
        f"Chargeback by the cardholder's bank ({dispute.reason or 'no reason given'}),"
        f" fee {Money(movement.fee, dispute.currency).decimal}",
    )
    _move_or_note(pledge, "charged_back", "dispute_funds_withdrawn", taken.amount, movement.id)
    _lower_collected(pledge, taken.amount)


def _record_movement(
    pledge: Pledge, movement: DisputeMovement, postings: list[tuple[str, Money]], memo: str
) -> None:
    """One `dispute` ledger transaction per movement of money, keyed by its id."""
    ledger.record(
        EntryKind.DISPUTE,
        campaign_id=pledge.campaign_id,
        reference=public_reference("dispute", pledge.id, movement.id),
        postings=postings,
        counterparty=public_counterparty(pledge),
        memo=memo,
    )


def _move_or_note(pledge: Pledge, event: str, note: str, amount: int, detail: str) -> None:
    """The pledge follows the money when it is where the event starts (charged, or
    disputed); otherwise (partly refunded meanwhile, say) its history notes it."""
    if lifecycle.move_pledge(pledge, event, amount=amount, detail=detail) is None:
        lifecycle.note(pledge.id, note, amount=amount, detail=detail)


def _reinstated(pledge: Pledge, dispute: ProviderDispute, movement: DisputeMovement) -> None:
    """Back to whoever covered the withdrawal: the reserve first, then the campaign."""
    given = Money(movement.amount, dispute.currency)
    covered = 0
    for withdrawal in dispute.movements:
        if withdrawal.amount < 0:
            entry = _recorded(public_reference("dispute", pledge.id, withdrawal.id))
            covered += -sum(
                p.amount for p in (entry.postings if entry else []) if p.account == ledger.RESERVE
            )
    to_reserve = min(max(covered, 0), given.amount)
    postings = [(ledger.SUPPORTERS, -given)]
    if to_reserve:
        postings.append((ledger.RESERVE, Money(to_reserve, dispute.currency)))
    if given.amount > to_reserve:
        account = ledger.campaign_account(pledge.campaign_id)
        postings.append((account, Money(given.amount - to_reserve, dispute.currency)))
    _record_movement(
        pledge, movement, postings, "Chargeback reversed: the bank gave the money back"
    )
    _move_or_note(
        pledge, "charge_reinstated", "dispute_funds_reinstated", given.amount, movement.id
    )
    _lower_collected(pledge, -given.amount)


def _remember(pledge: Pledge, dispute: ProviderDispute) -> Dispute:
    """The operators' record of the dispute, as the processor last described it."""
    row = db.session.scalar(
        select(Dispute).where(Dispute.provider_dispute_id == dispute.id).with_for_update()
    )
    if row is None:
        row = Dispute(provider_dispute_id=dispute.id, pledge_id=pledge.id)
        db.session.add(row)
    row.amount, row.currency = dispute.amount, dispute.currency
    row.status, row.reason = dispute.status, dispute.reason[:60]
    row.evidence_due_by = dispute.evidence_due_by
    row.updated_at = utcnow()
    return row


def submit_evidence(row: Dispute, explanation: str) -> None:
    """Send operators' answer to the processor (which submits it to the bank at once)
    and note it; the text itself is not kept here. Raises BackendError, changing
    nothing, when the processor refuses or cannot be reached. Flushes."""
    dispute = get_backend().submit_dispute_evidence(row.provider_dispute_id, explanation)
    _remember(row.pledge, dispute)
    row.evidence_submitted_at = utcnow()
    db.session.flush()


def for_operators() -> list[Dispute]:
    """Every dispute, the ones waiting for an answer first, soonest due first."""
    rows = db.session.scalars(select(Dispute).order_by(Dispute.opened_at.desc())).all()
    return sorted(
        rows,
        key=lambda d: (not d.answerable, not d.open, d.evidence_due_by or d.opened_at),
    )


def follow(event_type: str, dispute_id: str) -> str:
    """Apply what the processor now says about a dispute. Returns the outcome."""
    dispute = get_backend().dispute(dispute_id)
    pledge = db.session.scalar(
        select(Pledge).where(Pledge.provider_charge_id == dispute.charge_id).with_for_update()
    )
    if pledge is None or dispute.currency != pledge.currency:
        return "ignored"
    _remember(pledge, dispute)
    moved = 0
    # Withdrawals first: a reinstatement gives back what a withdrawal took.
    for movement in sorted(dispute.movements, key=lambda m: m.amount):
        if _recorded(public_reference("dispute", pledge.id, movement.id)) is not None:
            continue
        (_withdrawn if movement.amount < 0 else _reinstated)(pledge, dispute, movement)
        moved += 1
    step = STEPS.get(event_type)
    detail = f"{dispute.id} {dispute.status}"
    noted = False
    if step is not None and not _noted(pledge, step, detail):
        lifecycle.note(pledge.id, step, amount=dispute.amount, detail=detail)
        noted = True
    db.session.flush()
    if moved or noted:
        what = f"Pledge {pledge.public_id}: dispute {dispute.id} is {dispute.status}."
        emails.tell_operators("A charge is disputed", what)
        tell_committee(
            pledge.campaign,
            "disputed",
            amount=Money(dispute.amount, dispute.currency),
            status=dispute.status,
        )
    return "recorded" if moved or noted else "nothing new"

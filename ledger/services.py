"""The ledger's append-only API. Callers never update or delete ledger rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import func, select

from core.extensions import db
from core.money import Money, validate_currency
from ledger.models import EntryKind, LedgerPosting, LedgerTransaction

SUPPORTERS = "supporters"  # money coming in from outside (card payments)
PROCESSOR_FEES = "processor:fees"
PLATFORM = "platform"


def campaign_account(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


class LedgerError(ValueError):
    pass


def record(
    kind: EntryKind,
    *,
    campaign_id: int | None,
    reference: str,
    postings: Iterable[tuple[str, Money]],
    counterparty: str = "",
    memo: str = "",
) -> LedgerTransaction:
    """Append one balanced transaction (its postings sum to zero per currency)."""
    postings = list(postings)
    if len(postings) < 2:
        raise LedgerError("a transaction needs at least two postings")
    sums: dict[str, int] = defaultdict(int)
    for _account, money in postings:
        sums[validate_currency(money.currency)] += money.amount
    if any(sums.values()):
        raise LedgerError(f"postings do not balance: {dict(sums)}")
    transaction = LedgerTransaction(
        kind=kind,
        campaign_id=campaign_id,
        reference=reference,
        counterparty=counterparty,
        memo=memo,
    )
    db.session.add(transaction)
    db.session.flush()
    for account, money in postings:
        db.session.add(
            LedgerPosting(
                transaction_id=transaction.id,
                account=account,
                amount=money.amount,
                currency=money.currency,
            )
        )
    if campaign_id is not None:
        account = campaign_account(campaign_id)
        for currency in sums:
            if balance(account, currency) < 0:
                raise LedgerError(f"{account} would go below zero in {currency}")
    db.session.flush()
    return transaction


def balance(account: str, currency: str) -> int:
    return db.session.scalar(
        select(func.coalesce(func.sum(LedgerPosting.amount), 0)).where(
            LedgerPosting.account == account, LedgerPosting.currency == currency
        )
    )


def campaign_totals(campaign_id: int) -> dict[str, int]:
    """Sums by kind of the campaign account's postings (raised, fees, refunds, ...)."""
    rows = db.session.execute(
        select(LedgerTransaction.kind, func.sum(LedgerPosting.amount))
        .join(LedgerPosting)
        .where(
            LedgerTransaction.campaign_id == campaign_id,
            LedgerPosting.account == campaign_account(campaign_id),
        )
        .group_by(LedgerTransaction.kind)
    ).all()
    return {kind: int(total) for kind, total in rows}

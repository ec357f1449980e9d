"""The ledger's append-only API. Callers never update or delete ledger rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, func, insert, not_, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import utcnow
from core.extensions import changed, db
from core.money import Money, validate_currency
from ledger import log
from ledger.models import EntryKind, LedgerBalance, LedgerPosting, LedgerTransaction
from ledger.signals import entries_recorded

SUPPORTERS = "supporters"  # money coming in from outside (card payments)
FUNDERS = "funders"  # money coming in from outside into matching pools
PROCESSOR_FEES = "processor:fees"
PLATFORM = "platform"
# The platform's own money, covering what a campaign no longer holds when money is
# taken back from outside (a refund made at the processor after the campaign paid out,
# a chargeback): it may go below zero, and is shown publicly on the ledger.
RESERVE = "platform:reserve"


def campaign_account(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


def round_account(round_id: int) -> str:
    """A matching round's pool."""
    return f"round:{round_id}"


# Accounts that hold money someone is owed: never below zero. The database's CHECK
# constraint backs up the campaigns' (ledger_balances.campaign_not_negative).
NEVER_NEGATIVE = ("campaign:", "round:")


class LedgerError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    campaign_id: int | None
    reference: str
    postings: tuple[tuple[str, Money], ...]
    counterparty: str = ""
    memo: str = ""


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
    [transaction_id] = record_many(
        [Entry(kind, campaign_id, reference, tuple(postings), counterparty, memo)]
    )
    return db.session.get_one(LedgerTransaction, transaction_id)


def record_many(entries: list[Entry]) -> list[int]:
    """Append balanced transactions in order, in a few statements whatever their number;
    returns their ids. Balances move once per account, after every entry is checked."""
    deltas: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        if len(entry.postings) < 2:
            raise LedgerError("a transaction needs at least two postings")
        sums: dict[str, int] = defaultdict(int)
        for account, money in entry.postings:
            sums[validate_currency(money.currency)] += money.amount
            deltas[(account, money.currency)] += money.amount
        if any(sums.values()):
            raise LedgerError(f"postings of {entry.reference} do not balance: {dict(sums)}")
    # Each account moves once, by its entries' sum, so the order checks nothing: it is
    # the order rows are locked in, the same for every writer (by account, then
    # currency), so that two transactions never wait for each other.
    for (account, currency), delta in sorted(deltas.items()):
        if delta:
            _move_balance(account, Money(delta, currency))
    now = utcnow()
    ids = db.session.scalars(
        insert(LedgerTransaction).returning(LedgerTransaction.id, sort_by_parameter_order=True),
        [
            {
                "kind": e.kind,
                "campaign_id": e.campaign_id,
                "reference": e.reference,
                "counterparty": e.counterparty,
                "memo": e.memo,
                "created_at": now,
            }
            for e in entries
        ],
    ).all()
    db.session.execute(
        insert(LedgerPosting),
        [
            {
                "transaction_id": transaction_id,
                "account": account,
                "amount": money.amount,
                "currency": money.currency,
            }
            for transaction_id, entry in zip(ids, entries, strict=True)
            for account, money in entry.postings
        ],
    )
    # Into the Merkle log in the same transaction: no entry is ever outside it.
    log.append(list(zip(ids, entries, strict=True)), now)
    entries_recorded.send(entries=entries)
    return list(ids)


def _move_balance(account: str, money: Money) -> None:
    """Add to a running balance with one guarded UPDATE: parallel postings to one
    account never lose an update, and a campaign's balance never goes below zero (the
    table's CHECK constraint is the backstop). Not an upsert: PostgreSQL checks
    constraints on the row it proposes to insert before noticing the conflict."""
    allowed = or_(
        LedgerBalance.balance + money.amount >= 0,
        and_(*(not_(LedgerBalance.account.startswith(prefix)) for prefix in NEVER_NEGATIVE)),
    )
    row = LedgerBalance.account == account, LedgerBalance.currency == money.currency
    for _look in range(2):
        moved = changed(
            update(LedgerBalance)
            .where(*row, allowed)
            .values(balance=LedgerBalance.balance + money.amount)
        )
        if moved:
            return
        if db.session.scalar(select(LedgerBalance.id).where(*row)) is None:
            break  # no row yet: this is the account's first posting
        # The row is there but the UPDATE moved nothing: either the balance would go
        # below zero, or a parallel transaction created the row after our UPDATE
        # began (each statement sees what was committed when it started). Look again.
    else:
        raise LedgerError(f"{account} cannot go below zero in {money.currency}")
    if account.startswith(NEVER_NEGATIVE) and money.amount < 0:
        raise LedgerError(f"{account} cannot go below zero in {money.currency}")
    try:
        with db.session.begin_nested():  # first posting to this account: create its row
            db.session.execute(
                insert(LedgerBalance).values(
                    account=account, currency=money.currency, balance=money.amount
                )
            )
    except IntegrityError:  # created by a parallel transaction meanwhile
        _move_balance(account, money)


def balance(account: str, currency: str) -> int:
    return (
        db.session.scalar(
            select(LedgerBalance.balance).where(
                LedgerBalance.account == account, LedgerBalance.currency == currency
            )
        )
        or 0
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

from __future__ import annotations

import enum
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import utcnow
from core.extensions import Model
from core.types import UTCDateTime


class EntryKind(enum.StrEnum):
    PLEDGE_CHARGE = "pledge_charge"
    PROCESSOR_FEE = "processor_fee"
    REFUND = "refund"
    DISBURSEMENT = "disbursement"
    ADJUSTMENT = "adjustment"
    ROUND_POOL = "round_pool"  # a funder's money into a matching round's pool
    ROUND_MATCH = "round_match"  # a round's match, from its pool to a campaign
    DISPUTE = "dispute"  # a chargeback taken (or given back) by the supporter's bank


ENTRY_KIND_LABELS = {
    EntryKind.PLEDGE_CHARGE: _l("pledge charge"),
    EntryKind.PROCESSOR_FEE: _l("processor fee"),
    EntryKind.REFUND: _l("refund"),
    EntryKind.DISBURSEMENT: _l("disbursement"),
    EntryKind.ADJUSTMENT: _l("adjustment"),
    EntryKind.ROUND_POOL: _l("matching pool"),
    EntryKind.ROUND_MATCH: _l("matching"),
    EntryKind.DISPUTE: _l("chargeback"),
}


def entry_kind_label(kind: str) -> str:
    """A kind as the visitor reads it; an unknown one as stored."""
    if kind in set(EntryKind):
        return str(ENTRY_KIND_LABELS[EntryKind(kind)])
    return kind.replace("_", " ")


class LedgerTransaction(Model):
    """One balanced transaction. Append-only: corrections are new transactions."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    # A public reference: never a provider id, an email or a name that was not chosen.
    reference: Mapped[str] = mapped_column(String(120), unique=True)
    counterparty: Mapped[str] = mapped_column(String(120), default="")
    memo: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    postings: Mapped[list[LedgerPosting]] = relationship(
        back_populates="transaction", order_by="LedgerPosting.id"
    )


class LedgerPosting(Model):
    __tablename__ = "ledger_postings"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account: Mapped[str] = mapped_column(String(80), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units
    currency: Mapped[str] = mapped_column(String(3))

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="postings")


class LedgerBalance(Model):
    """Running balance per account and currency, moved in the same transaction as the
    postings. The database refuses a campaign balance below zero."""

    __tablename__ = "ledger_balances"
    __table_args__ = (
        UniqueConstraint("account", "currency", name="uq_ledger_balances_account_currency"),
        CheckConstraint(
            "balance >= 0 OR account NOT LIKE 'campaign:%'", name="campaign_not_negative"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerLeaf(Model):
    """The transaction at each position of the Merkle log, in append order."""

    __tablename__ = "ledger_leaves"

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)


class LedgerTreeNode(Model):
    """A perfect subtree's hash: level 0 are leaf hashes."""

    __tablename__ = "ledger_tree_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerCheckpoint(Model):
    """A signed note (C2SP tlog-checkpoint) for one tree size."""

    __tablename__ = "ledger_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

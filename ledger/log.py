"""The tamper-evident log: every ledger transaction is one leaf, in append order.

Leaf bytes are canonical JSON (sorted keys, no insignificant whitespace, UTF-8,
integers only) of the transaction and its postings:

    {"campaign": <slug or null>, "counterparty": str, "kind": str, "memo": str,
     "postings": [{"account": str, "amount": int, "currency": str}, ...],
     "reference": str, "time": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "version": 1}

Postings are in the order they were written. Sequencing (giving new transactions
their leaf indexes, storing the new tree nodes and signing a checkpoint) runs in one
database transaction, serialised by a lock, after each batch of appends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, and_, func, insert, select, text, tuple_

from campaigns.models import Campaign
from core.extensions import db
from ledger import merkle, signing
from ledger.models import (
    LedgerCheckpoint,
    LedgerLeaf,
    LedgerPosting,
    LedgerTransaction,
    LedgerTreeNode,
)
from verifier.counterfund_verify import VerificationError, verify_consistency

log = logging.getLogger(__name__)
SEQUENCE_LOCK = 6962  # PostgreSQL advisory lock id for the sequencer


def leaf_document(
    *,
    kind: str,
    campaign: str | None,
    reference: str,
    counterparty: str,
    memo: str,
    created_at,
    postings: list[dict],
) -> dict:
    """The one definition of what a leaf says (see the module docstring)."""
    return {
        "version": 1,
        "kind": str(kind),
        "campaign": campaign,
        "reference": reference,
        "counterparty": counterparty,
        "memo": memo,
        "time": created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "postings": postings,
    }


def encode(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fetch_nodes(
    keys: Iterable[merkle.Node], connection: Connection | None = None
) -> dict[merkle.Node, bytes]:
    """Stored tree nodes by key (through `connection`, else the session); raises
    LookupError naming those missing."""
    keys = list(keys)
    found: dict[merkle.Node, bytes] = {}
    reader = connection or db.session
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows = reader.execute(
            select(LedgerTreeNode.level, LedgerTreeNode.index, LedgerTreeNode.hash).where(
                tuple_(LedgerTreeNode.level, LedgerTreeNode.index).in_(chunk)
            )
        ).all()
        found.update({(level, index): bytes(value) for level, index, value in rows})
    missing = set(keys) - set(found)
    if missing:
        raise LookupError(f"tree nodes missing: {sorted(missing)[:5]}")
    return found


def tree_size() -> int:
    last = db.session.scalar(select(func.max(LedgerLeaf.leaf_index)))
    return 0 if last is None else last + 1


def _lock() -> None:
    """One writer of the log at a time: PostgreSQL's advisory lock, held until commit
    (SQLite's single writer lock does the same)."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SEQUENCE_LOCK})


def append(items: list, created_at) -> None:
    """Give new transactions (id, ledger Entry) the next leaf indexes and store the new
    tree nodes, inside the transaction that writes them."""
    _lock()
    size = tree_size()
    campaign_ids = {entry.campaign_id for _, entry in items if entry.campaign_id is not None}
    slugs = dict(
        db.session.execute(
            select(Campaign.id, Campaign.slug).where(Campaign.id.in_(campaign_ids))
        ).all()
    )
    hashes = []
    for _, entry in items:
        doc = leaf_document(
            kind=entry.kind,
            campaign=slugs.get(entry.campaign_id),
            reference=entry.reference,
            counterparty=entry.counterparty,
            memo=entry.memo,
            created_at=created_at,
            postings=[
                {"account": account, "amount": money.amount, "currency": money.currency}
                for account, money in entry.postings
            ],
        )
        hashes.append(merkle.leaf_hash(encode(doc)))
    db.session.execute(
        insert(LedgerLeaf),
        [{"leaf_index": size + n, "transaction_id": tx_id} for n, (tx_id, _) in enumerate(items)],
    )
    nodes = merkle.new_nodes(size, hashes, fetch_nodes)
    db.session.execute(
        insert(LedgerTreeNode),
        [
            {"level": level, "index": index, "hash": value}
            for (level, index), value in nodes.items()
        ],
    )


def sequence() -> int:
    """Sign a checkpoint for the log as it is now, if it grew since the last one;
    returns how many entries the new checkpoint adds. Commits."""
    _lock()
    size = tree_size()
    latest = latest_checkpoint()
    signed = latest.tree_size if latest else 0
    if size == signed and latest is not None:
        db.session.commit()
        return 0
    _checkpoint(size)
    db.session.commit()
    return size - signed


def _checkpoint(size: int) -> LedgerCheckpoint:
    root = merkle.root(size, fetch_nodes)
    previous = db.session.scalar(
        select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size.desc()).limit(1)
    )
    if previous is not None and previous.tree_size > 0:
        # Never sign a tree that does not extend the last one signed.
        try:
            verify_consistency(
                previous.tree_size,
                size,
                bytes(previous.root_hash),
                root,
                merkle.consistency_proof(previous.tree_size, size, fetch_nodes),
            )
        except VerificationError as exc:
            raise RuntimeError(f"refusing to sign an inconsistent tree: {exc}") from exc
    checkpoint = LedgerCheckpoint(
        tree_size=size, root_hash=root, note=signing.sign_checkpoint(size, root)
    )
    db.session.add(checkpoint)
    db.session.flush()
    return checkpoint


def latest_checkpoint() -> LedgerCheckpoint | None:
    return db.session.scalar(
        select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size.desc()).limit(1)
    )


def _documents(low: int, high: int, campaign_id: int | None = None) -> list[tuple[int, dict]]:
    """(leaf index, document) for low <= index <= high, in log order: two range
    queries over plain columns (no ORM objects, no long IN lists)."""
    leaf_range = and_(LedgerLeaf.leaf_index >= low, LedgerLeaf.leaf_index <= high)
    query = (
        select(
            LedgerLeaf.leaf_index,
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.reference,
            LedgerTransaction.counterparty,
            LedgerTransaction.memo,
            LedgerTransaction.created_at,
            Campaign.slug,
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerLeaf.transaction_id)
        .outerjoin(Campaign)
        .where(leaf_range)
        .order_by(LedgerLeaf.leaf_index)
    )
    if campaign_id is not None:
        query = query.where(LedgerTransaction.campaign_id == campaign_id)
    rows = db.session.execute(query).all()
    if not rows:
        return []
    wanted = {row[1] for row in rows}
    postings: dict[int, list[dict]] = {}
    # A range over the indexed transaction id (ids of a stretch of the log are nearly
    # contiguous): an index scan whatever the planner's statistics say.
    for tx_id, account, amount, currency in db.session.execute(
        select(
            LedgerPosting.transaction_id,
            LedgerPosting.account,
            LedgerPosting.amount,
            LedgerPosting.currency,
        )
        .where(
            LedgerPosting.transaction_id >= min(wanted), LedgerPosting.transaction_id <= max(wanted)
        )
        .order_by(LedgerPosting.id)
    ):
        if tx_id in wanted:
            postings.setdefault(tx_id, []).append(
                {"account": account, "amount": int(amount), "currency": currency}
            )
    documents = []
    for row in rows:
        index, tx_id, kind, reference, counterparty, memo, created_at, slug = row
        documents.append(
            (
                index,
                leaf_document(
                    kind=kind,
                    campaign=slug,
                    reference=reference,
                    counterparty=counterparty,
                    memo=memo,
                    created_at=created_at,
                    postings=postings.get(tx_id, []),
                ),
            )
        )
    return documents


def entries(start: int, end: int) -> list[tuple[int, bytes, dict]]:
    return [(index, encode(doc), doc) for index, doc in _documents(start, end - 1)]


def stream_entries(chunk: int = 2000, campaign_id: int | None = None) -> Iterator:
    """(index, leaf bytes, document) in log order, a chunk of the log at a time:
    constant memory whatever the size of the log."""
    size = tree_size()
    for low in range(0, size, chunk):
        for index, doc in _documents(low, min(size, low + chunk) - 1, campaign_id):
            yield index, encode(doc), doc

"""`flask ledger verify`: recompute the whole tamper-evident log from the database.

Every entry's leaf bytes are composed again from its transaction's rows, hashed, and
built into the Merkle tree; the root at the latest checkpoint's size must be the root
that checkpoint signs (its signature checked too), and every node of the tree the node
stored at append (inclusion proofs are made of them). Every transaction must balance
in each currency and be in the log exactly once. The first bad entry is named.

Speed (issue 17; docs/benchmarks.md): on PostgreSQL the database composes the leaf
bytes (`_LEAF_BYTES_SQL`, held to `log.encode` by tests/test_ledger_verification.py on
hostile text), a range of positions per query, two queries at a time on two backends
sharing one snapshot, so both cores compose while this process hashes the ranges
before. Each entry's postings are summed as its leaf is composed (those in several
currencies are summed per currency afterwards). Leaf hashes are reduced a
power-of-two block at a time, and only the root is compared: should it differ, a
second, slower pass compares each entry with the leaf hash stored at append to name
the first one altered. SQLite (the embedded default) composes leaves in Python.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from hashlib import sha256
from typing import NamedTuple

from sqlalchemy import Connection, and_, func, or_, select

from core.extensions import db
from ledger import log, merkle, signing
from ledger.models import (
    LedgerCheckpoint,
    LedgerLeaf,
    LedgerPosting,
    LedgerTransaction,
    LedgerTreeNode,
)
from verifier.counterfund_verify import VerificationError, verify_checkpoint

CHUNK = 4096  # leaves composed in Python per step (SQLite)
RANGE = 65536  # leaves a backend composes per query: about 21 MB of leaf bytes
MIXED_BATCH = 1000  # entries in several currencies summed per query (the IN list's length)

# The leaf bytes of the entries at positions [low, high), composed exactly as
# `log.encode(log.leaf_document(...))` composes them: keys sorted, no spaces, strings
# escaped by to_json as json.dumps(ensure_ascii=False) escapes them (\" \\ \b \f \n \r
# \t, other control characters as \u00xx, nothing else), postings in the order written.
_LEAF_BYTES_SQL = """
SELECT l.leaf_index,
  '\\x00'::bytea || convert_to(
    '{"campaign":' || coalesce(to_json(c.slug)::text, 'null')
    || ',"counterparty":' || to_json(t.counterparty)::text
    || ',"kind":' || to_json(t.kind)::text
    || ',"memo":' || to_json(t.memo)::text
    || ',"postings":[' || coalesce(p.postings, '') || ']'
    || ',"reference":' || to_json(t.reference)::text
    || ',"time":"'
    || to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '","version":1}',
    'UTF8'),
  CASE WHEN p.first_currency IS DISTINCT FROM p.last_currency THEN NULL
    ELSE coalesce(p.total, 0) = 0 END
FROM ledger_leaves l
JOIN ledger_transactions t ON t.id = l.transaction_id
LEFT JOIN campaigns c ON c.id = t.campaign_id
LEFT JOIN LATERAL (
  SELECT string_agg(
    '{"account":' || to_json(lp.account)::text || ',"amount":' || lp.amount
    || ',"currency":' || to_json(lp.currency)::text || '}', ',' ORDER BY lp.id) AS postings,
    sum(lp.amount) AS total, min(lp.currency) AS first_currency,
    max(lp.currency) AS last_currency
  FROM ledger_postings lp WHERE lp.transaction_id = t.id
) p ON true
WHERE l.leaf_index >= %(low)s AND l.leaf_index < %(high)s
"""


class _RootBuilder:
    """The root of a growing tree with O(log n) memory: a stack of perfect subtrees.
    Every node it computes is either in the levels `add_leaves` returns or in
    `joined` (nodes over blocks added separately), to be compared with the stored tree."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, bytes]] = []
        self.count = 0
        self.joined: list[tuple[merkle.Node, bytes]] = []

    def add_leaves(self, hashes: list[bytes]) -> list[tuple[int, list[list[bytes]]]]:
        """Each aligned power-of-two run is reduced level by level (a comprehension per
        level rather than a Python step per node); returns each run's first position
        and its levels."""
        done, blocks = 0, []
        while done < len(hashes):
            size = 1 << (len(hashes) - done).bit_length() - 1  # the largest block left
            alignment = self.count & -self.count  # the largest block aligned here; 0: any
            if alignment:
                size = min(size, alignment)
            levels = _levels(hashes[done : done + size])
            blocks.append((self.count, levels))
            self.add_subtree(size, levels[-1][0])
            done += size
        return blocks

    def add_subtree(self, size: int, value: bytes) -> None:
        """A perfect subtree of `size` leaves starting at `self.count` (aligned)."""
        self.count += size
        while self.stack and self.stack[-1][0] == size:
            left_size, left = self.stack.pop()
            value = merkle.node_hash(left, value)
            size += left_size
            level = size.bit_length() - 1
            self.joined.append(((level, (self.count - size) >> level), value))
        self.stack.append((size, value))

    def root(self) -> bytes:
        if not self.stack:
            return merkle.empty_root()
        value = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            value = merkle.node_hash(left, value)
        return value


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    """Every level of a perfect tree over `hashes` (a power of two of them), from the
    leaves' to the root's."""
    levels = [hashes]
    while len(hashes) > 1:
        hashes = [merkle.node_hash(hashes[n], hashes[n + 1]) for n in range(0, len(hashes), 2)]
        levels.append(hashes)
    return levels


def _stored_levels(conn: Connection, low: int, high: int) -> dict[int, list[bytes]]:
    """The stored tree nodes over positions [low, high), by level, each level's in
    order: low is aligned to every block there (a multiple of the range or step size)."""
    top = (high - low).bit_length() - 1
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        assert driver is not None  # a live connection inside its transaction
        with driver.cursor(binary=True) as cursor:
            # One array per level, loaded in C: no Python step per node.
            return dict(cursor.execute(_STORED_LEVELS_SQL, {"low": low, "high": high, "top": top}))
    stored: dict[int, list[bytes]] = {}
    for level, value in conn.execute(
        select(LedgerTreeNode.level, LedgerTreeNode.hash)
        .where(
            or_(
                *(
                    and_(
                        LedgerTreeNode.level == level,
                        LedgerTreeNode.index >= low >> level,
                        LedgerTreeNode.index < high >> level,
                    )
                    for level in range(top + 1)
                )
            )
        )
        .order_by(LedgerTreeNode.level, LedgerTreeNode.index)
    ):
        stored.setdefault(level, []).append(bytes(value))
    return stored


# An index range scan per level, in key order (no sort): a third of the time that
# array_agg over a lateral join took.
_STORED_LEVELS_SQL = """
SELECT k, ARRAY(
  SELECT hash FROM ledger_tree_nodes
  WHERE level = k AND "index" >= %(low)s::bigint >> k AND "index" < %(high)s::bigint >> k
  ORDER BY "index")
FROM generate_series(0, %(top)s) AS k
"""


class _Missing(Exception):
    def __init__(self, index: int):
        self.index = index


def _first_gap(rows: list, start: int) -> int | None:
    """The first position missing from rows sorted by position that must be positions
    start, start + 1, ... (None when none is missing before the last row)."""
    if rows and (rows[0][0] != start or rows[-1][0] != start + len(rows) - 1):
        return next(n for n, row in enumerate(rows, start) if row[0] != n)
    return None


def _hashed(rows: list, start: int) -> list[bytes]:
    """The leaf hashes (merkle.leaf_hash) of prefixed leaves at start, start + 1, ..."""
    gap = _first_gap(rows, start)
    if gap is not None:
        raise _Missing(gap)
    return [sha256(row[1]).digest() for row in rows]


def _leaf_rows(conn: Connection, low: int, high: int) -> list:
    """(position, leaf bytes after RFC 6962's 0x00 leaf prefix, balanced) of positions
    [low, high) that are in the log, sorted by position (sorted here: the database
    would sort the composed bytes, on disk). Balanced is None for postings in several
    currencies (summed per currency by `_first_unbalanced`)."""
    driver = conn.connection.driver_connection
    assert driver is not None  # a live connection inside its transaction
    with driver.cursor(binary=True) as cursor:
        # Fetched whole: the driver loads a result in C, where reading a stream costs
        # a Python step per row (most of this process's time when it did).
        rows = cursor.execute(_LEAF_BYTES_SQL, {"low": low, "high": high}).fetchall()
    rows.sort()  # by position: positions are unique, so the leaves are never compared
    return rows


class _Range(NamedTuple):
    hashes: list[bytes]  # of the positions read (never used when one is missing)
    missing: int | None
    unbalanced: int | None  # the first position whose postings do not sum to zero
    mixed: list[int]  # positions with postings in several currencies
    stored: dict[int, list[bytes]]  # the stored tree nodes over the range, by level


def _read_range(conn: Connection, low: int, high: int) -> _Range:
    """A range with a missing position ends verification, so its hashes are never
    used; its balances still are: `_verify` names an entry that does not balance
    if it comes before the missing one."""
    rows = _leaf_rows(conn, low, high)
    missing = _first_gap(rows, low)
    if missing is None and len(rows) != high - low:
        missing = low + len(rows)  # the range came back short, without a gap
    return _Range(
        [sha256(row[1]).digest() for row in rows],
        missing,
        next((row[0] for row in rows if row[2] is False), None),
        [row[0] for row in rows if row[2] is None],
        _stored_levels(conn, low, high),
    )


def _composed_in_python() -> Iterator[list]:
    rows: list = []
    for index, leaf, _doc in log.stream_entries(CHUNK):
        rows.append((index, b"\x00" + leaf))
        if len(rows) == CHUNK:
            yield rows
            rows = []
    if rows:
        yield rows


class _Rehash:
    """Leaf hashes in log order into a root builder, noting the root at the signed
    size on the way, and the balances the database reported with the leaves."""

    def __init__(self, signed_size: int):
        self.builder = _RootBuilder()
        self.signed_size = signed_size
        self.root_at_signed = merkle.empty_root() if signed_size == 0 else None
        self.balances_read = False  # SQLite: the balances are summed afterwards
        self.unbalanced: int | None = None
        self.mixed: list[int] = []
        self.stored_nodes_differ = False

    def add_range(self, found: _Range) -> None:
        self.balances_read = True
        if self.unbalanced is None:
            self.unbalanced = found.unbalanced
            self.mixed += found.mixed
        if found.missing is not None:
            raise _Missing(found.missing)
        self.add(found.hashes, found.stored)

    def add(self, hashes: list[bytes], stored: dict[int, list[bytes]]) -> None:
        """Hashes of the positions from `builder.count` on, and the stored nodes over
        them (by level, from the first stored over that position)."""
        start = self.builder.count
        if start < self.signed_size <= start + len(hashes):
            signed = self.builder.add_leaves(hashes[: self.signed_size - start])
            self._compare(start, stored, signed)
            self.root_at_signed = self.builder.root()
            hashes = hashes[self.signed_size - start :]
        self._compare(start, stored, self.builder.add_leaves(hashes))

    def _compare(self, low: int, stored: dict[int, list[bytes]], blocks: list) -> None:
        """Each node the server hands out in proofs must be the node recomputed here."""
        for start, levels in blocks:
            for level, computed in enumerate(levels):
                first = (start >> level) - (low >> level)
                if stored.get(level, [])[first : first + len(computed)] != computed:
                    self.stored_nodes_differ = True

    def compare_joined(self, conn: Connection) -> None:
        """The nodes over blocks added separately, compared with the stored ones."""
        joined = dict(self.builder.joined)
        try:
            if log.fetch_nodes(joined, conn) != joined:
                self.stored_nodes_differ = True
        except LookupError:  # one of them is not stored at all
            self.stored_nodes_differ = True


def _rehash(rehash: _Rehash, conns: list[Connection], size: int) -> None:
    """Re-hash positions [0, size); raises _Missing at the first absent position."""
    if len(conns) > 1:
        _rehash_ranges(rehash, conns, size)
    else:
        for rows in _composed_in_python():
            low = rehash.builder.count
            rehash.add(_hashed(rows, low), _stored_levels(conns[0], low, low + len(rows)))
    if rehash.builder.count != size:
        raise _Missing(rehash.builder.count)
    rehash.compare_joined(conns[0])


def _rehash_ranges(rehash: _Rehash, conns: list[Connection], size: int) -> None:
    """A range of the log at a time from each connection in turn, so every backend
    composes while this thread builds the tree from the ranges before."""
    ranges = [(low, min(size, low + RANGE)) for low in range(0, size, RANGE)]
    pending: deque[Future] = deque()
    with ExitStack() as stack:
        readers = [stack.enter_context(ThreadPoolExecutor(max_workers=1)) for _ in conns]
        try:
            for n, (low, high) in enumerate(ranges):
                reader = n % len(conns)
                pending.append(readers[reader].submit(_read_range, conns[reader], low, high))
                if len(pending) > len(conns):  # bounded: one range ahead per connection
                    rehash.add_range(pending.popleft().result())
            while pending:
                rehash.add_range(pending.popleft().result())
        finally:
            for waiting in pending:  # after a missing entry, the rest is not needed
                waiting.cancel()


@contextmanager
def _snapshot() -> Iterator[list[Connection]]:
    """Connections that all read one snapshot: one consistent view of the log however
    long verifying takes. Two on PostgreSQL, each composing ranges of the log in
    turn; the session's own on SQLite."""
    if db.engine.dialect.name != "postgresql":
        yield [db.session.connection()]
        return
    options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with ExitStack() as stack:
        conns = [
            stack.enter_context(db.engine.connect().execution_options(**options)) for _ in range(2)
        ]
        snapshot = conns[0].exec_driver_sql("SELECT pg_export_snapshot()").scalar()
        for conn in conns[1:]:
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        for conn in conns:
            # Compiling this one query's expressions costs more than it saves.
            conn.exec_driver_sql("SET LOCAL jit = off")
            # Each query composes one range of positions: a lookup by key per entry,
            # where the planner would scan every transaction for each range, and reads
            # stored nodes by an index scan in key order, where a bitmap scan would
            # sort them. Both cores already work, one query each.
            for setting in ("enable_hashjoin", "enable_mergejoin", "enable_bitmapscan"):
                conn.exec_driver_sql(f"SET LOCAL {setting} = off")
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        yield conns


def _first_unbalanced(conn: Connection, rehash: _Rehash) -> int | None:
    """The position of the first transaction whose postings do not sum to zero in
    some currency. The database told, with each leaf, those in one currency; those in
    several are summed per currency here (all of them on SQLite)."""
    if not rehash.balances_read:
        return _first_unbalanced_among(conn, None)
    before = [n for n in rehash.mixed if rehash.unbalanced is None or n < rehash.unbalanced]
    for start in range(0, len(before), MIXED_BATCH):
        found = _first_unbalanced_among(conn, before[start : start + MIXED_BATCH])
        if found is not None:
            return found
    return rehash.unbalanced


def _first_unbalanced_among(conn: Connection, positions: list[int] | None) -> int | None:
    in_log = select(LedgerLeaf.transaction_id)
    if positions is not None:  # only their postings are summed, not the whole ledger's
        in_log = in_log.where(LedgerLeaf.leaf_index.in_(positions))
    unbalanced = (
        select(LedgerPosting.transaction_id)
        .where(LedgerPosting.transaction_id.in_(in_log))
        .group_by(LedgerPosting.transaction_id, LedgerPosting.currency)
        .having(func.sum(LedgerPosting.amount) != 0)
    )
    return conn.scalar(
        select(func.min(LedgerLeaf.leaf_index)).where(LedgerLeaf.transaction_id.in_(unbalanced))
    )


def _first_altered(conn: Connection) -> int | None:
    """The slow pass, run only when a root differs: each entry composed in Python and
    compared with the leaf hash stored when it was appended."""
    stored: dict[int, bytes] = {}
    for index, leaf, _doc in log.stream_entries(CHUNK):
        if index not in stored:
            rows = conn.execute(
                select(LedgerTreeNode.index, LedgerTreeNode.hash).where(
                    LedgerTreeNode.level == 0,
                    LedgerTreeNode.index >= index,
                    LedgerTreeNode.index < index + CHUNK,
                )
            )
            stored = {position: bytes(value) for position, value in rows}
        if stored.get(index) != merkle.leaf_hash(leaf):
            return index
    return None


def _named(conn: Connection, index: int, problem: str) -> str:
    reference = conn.scalar(
        select(LedgerTransaction.reference).join(LedgerLeaf).where(LedgerLeaf.leaf_index == index)
    )
    return f"entry {index} ({reference}) {problem}"


def verify_all() -> tuple[bool, list[str]]:
    """Returns (ok, report); see the module docstring for what is checked."""
    with _snapshot() as conns:
        return _verify(conns)


def _verify(conns: list[Connection]) -> tuple[bool, list[str]]:
    conn = conns[0]
    checkpoint = conn.execute(
        select(LedgerCheckpoint.note).order_by(LedgerCheckpoint.tree_size.desc()).limit(1)
    ).first()
    signed_size, signed_root, origin = 0, merkle.empty_root(), ""
    if checkpoint is not None:
        try:
            origin, signed_size, signed_root = verify_checkpoint(
                checkpoint.note, signing.verifier_key()
            )
        except VerificationError as exc:
            return False, [f"the latest checkpoint does not verify: {exc}"]
    last = conn.scalar(select(func.max(LedgerLeaf.leaf_index)))
    size = 0 if last is None else last + 1
    rehash = _Rehash(signed_size)
    try:
        _rehash(rehash, conns, size)
    except _Missing as missing:
        unbalanced = _first_unbalanced(conn, rehash)
        if unbalanced is not None and unbalanced < missing.index:
            return False, [_named(conn, unbalanced, "does not balance")]
        return False, [f"entry {missing.index} is missing from the log"]
    problem = _entry_problem(
        conn, rehash, size, signed_size, signed_root, _first_unbalanced(conn, rehash)
    )
    if problem:
        return False, [problem]
    report = [f"{size} entries re-hashed and balanced"]
    transactions = conn.scalar(select(func.count(LedgerTransaction.id))) or 0
    if transactions != size:
        return False, [*report, f"{transactions - size} ledger transactions are not in the log"]
    if checkpoint is None:
        return size == 0, [*report, "no checkpoint signed yet"]
    if signed_size > size:
        return False, [*report, f"the checkpoint covers {signed_size} entries; the log has {size}"]
    if rehash.root_at_signed != signed_root:
        return False, [*report, "the recomputed root differs from the signed checkpoint"]
    report.append(f"checkpoint for {signed_size} entries ({origin}): signature and root valid")
    return True, report


def _entry_problem(
    conn: Connection,
    rehash: _Rehash,
    size: int,
    signed_size: int,
    signed_root: bytes,
    unbalanced: int | None,
) -> str | None:
    """The first unbalanced or altered entry, by position; or the stored tree nodes
    when every entry is intact but they disagree with it."""
    roots_agree = signed_size > size or (
        rehash.root_at_signed == signed_root
        and (size == signed_size or rehash.builder.root() == merkle.root(size, log.fetch_nodes))
    )
    altered = None if roots_agree else _first_altered(conn)
    first = min((n for n in (unbalanced, altered) if n is not None), default=None)
    if first is not None and first == unbalanced:
        return _named(conn, first, "does not balance")
    if first is not None:
        return _named(
            conn,
            first,
            "was altered: its transaction no longer hashes to the leaf appended to the log",
        )
    if (not roots_agree or rehash.stored_nodes_differ) and rehash.root_at_signed == signed_root:
        # Every entry is the leaf it was appended as, yet the stored tree disagrees:
        # the proofs this server gives out would not verify.
        return "the stored tree nodes no longer match the entries' leaves"
    return None

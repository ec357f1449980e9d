"""RFC 6962 / RFC 9162 Merkle tree hashing, and proofs built from stored nodes.

Only perfect subtrees are stored (node (level, index) covers leaves
[index * 2**level, (index + 1) * 2**level)); the hash of any other range the RFC's
recursion needs (always the right edge of a tree) is combined from O(log n) of them.
A proof first lists every stored node it will need, fetches them in one query, then
computes: O(log n) work per proof, whatever the size of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

Node = tuple[int, int]  # (level, index)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    return hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect(start: int, end: int) -> Node | None:
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        return (level, start >> level)
    return None


def _range_nodes(start: int, end: int, out: set[Node]) -> None:
    node = _perfect(start, end)
    if node is not None:
        out.add(node)
        return
    k = _split(end - start)
    _range_nodes(start, start + k, out)
    _range_nodes(start + k, end, out)


def _range_hash(start: int, end: int, nodes: dict[Node, bytes]) -> bytes:
    node = _perfect(start, end)
    if node is not None:
        return nodes[node]
    k = _split(end - start)
    return node_hash(_range_hash(start, start + k, nodes), _range_hash(start + k, end, nodes))


def _inclusion_ranges(m: int, start: int, end: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.3.1 PATH(m, D[start:end]) as the ranges whose hashes form it."""
    ranges = []
    while end - start > 1:
        k = _split(end - start)
        if m < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start = start + k
    return list(reversed(ranges))


def _consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[0:n], true) as ranges."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, n
    while True:
        size = end - start
        if m == size:
            # The RFC's flag b: a range still starting at 0 is the old tree itself,
            # whose root the verifier has; once the walk went right it is not.
            if start != 0:
                ranges.append((start, end))
            break
        k = _split(size)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            m -= k
            start += k
    return list(reversed(ranges))


Fetch = Callable[[Iterable[Node]], dict[Node, bytes]]


def _hashes(ranges: list[tuple[int, int]], fetch: Fetch) -> list[bytes]:
    needed: set[Node] = set()
    for start, end in ranges:
        _range_nodes(start, end, needed)
    nodes = fetch(needed)
    return [_range_hash(start, end, nodes) for start, end in ranges]


def root(size: int, fetch: Fetch) -> bytes:
    if size == 0:
        return empty_root()
    return _hashes([(0, size)], fetch)[0]


def inclusion_proof(index: int, size: int, fetch: Fetch) -> list[bytes]:
    if not 0 <= index < size:
        raise ValueError("index must be inside the tree")
    return _hashes(_inclusion_ranges(index, 0, size), fetch)


def consistency_proof(first: int, second: int, fetch: Fetch) -> list[bytes]:
    if not 0 < first <= second:
        raise ValueError("sizes must satisfy 0 < first <= second")
    if first == second:
        return []
    return _hashes(_consistency_ranges(first, second), fetch)


def new_nodes(start: int, hashes: list[bytes], fetch: Fetch) -> dict[Node, bytes]:
    """The perfect-subtree nodes created by appending leaf `hashes` at index `start`
    (level 0 included). Left siblings that already exist are fetched (one per level)."""
    created: dict[Node, bytes] = {}
    known: dict[Node, bytes] = {}
    for offset, value in enumerate(hashes):
        index = start + offset
        created[(0, index)] = known[(0, index)] = value
        level = 0
        while index % 2 == 1:
            left = (level, index - 1)
            if left not in known:
                known.update(fetch([left]))
            parent = (level + 1, index // 2)
            created[parent] = known[parent] = node_hash(known[left], known[(level, index)])
            index //= 2
            level += 1
    return created

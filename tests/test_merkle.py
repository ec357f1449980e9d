"""RFC 6962 proofs: the transparency-dev vectors, and our proofs against a naive tree."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle
from verifier.counterfund_verify import (
    VerificationError,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "rfc6962"


def _vectors(kind: str):
    files = sorted((VECTORS / kind).glob("*/*.json"))
    if not files:
        pytest.fail(f"no {kind} vectors under {VECTORS}: ../shared must sit beside the repo")
    return [pytest.param(json.loads(f.read_text()), id=f"{f.parent.name}/{f.stem}") for f in files]


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.mark.parametrize("vector", _vectors("inclusion"))
def test_inclusion_vectors(vector):
    def run():
        verify_inclusion(
            vector["leafIdx"],
            vector["treeSize"],
            _b64(vector["leafHash"]),
            [_b64(p) for p in vector["proof"] or []],
            _b64(vector["root"]),
        )

    if vector["wantErr"]:
        with pytest.raises(VerificationError):
            run()
    else:
        run()


@pytest.mark.parametrize("vector", _vectors("consistency"))
def test_consistency_vectors(vector):
    def run():
        verify_consistency(
            vector["size1"],
            vector["size2"],
            _b64(vector["root1"]),
            _b64(vector["root2"]),
            [_b64(p) for p in vector["proof"] or []],
        )

    if vector["wantErr"]:
        with pytest.raises(VerificationError):
            run()
    else:
        run()


def _naive_root(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return merkle.node_hash(_naive_root(hashes[:k]), _naive_root(hashes[k:]))


def _stored(size: int):
    """A tree built by appending in random-ish chunks, as the sequencer does."""
    leaves = [merkle.leaf_hash(f"leaf {n}".encode()) for n in range(size)]
    nodes: dict = {}
    start = 0
    while start < size:
        chunk = leaves[start : start + 1 + start % 7]
        nodes.update(merkle.new_nodes(start, chunk, lambda keys: {k: nodes[k] for k in keys}))
        start += len(chunk)
    return leaves, lambda keys: {k: nodes[k] for k in keys}


@given(st.integers(min_value=1, max_value=300), st.data())
def test_our_proofs_verify_and_match_a_naive_tree(size, data):
    leaves, fetch = _stored(size)
    root = merkle.root(size, fetch)
    assert root == _naive_root(leaves) == root_of(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    verify_inclusion(index, size, leaves[index], merkle.inclusion_proof(index, size, fetch), root)
    first = data.draw(st.integers(min_value=1, max_value=size))
    first_root = merkle.root(first, fetch)
    assert first_root == _naive_root(leaves[:first])
    verify_consistency(first, size, first_root, root, merkle.consistency_proof(first, size, fetch))


def test_a_wrong_leaf_or_root_is_rejected():
    leaves, fetch = _stored(10)
    root = merkle.root(10, fetch)
    proof = merkle.inclusion_proof(3, 10, fetch)
    with pytest.raises(VerificationError):
        verify_inclusion(3, 10, leaves[4], proof, root)
    with pytest.raises(VerificationError):
        verify_inclusion(4, 10, leaves[3], proof, root)
    with pytest.raises(VerificationError):
        verify_consistency(
            4, 10, merkle.root(5, fetch), root, merkle.consistency_proof(4, 10, fetch)
        )

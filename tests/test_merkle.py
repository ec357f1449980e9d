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

# ../shared beside the repository, found from here or from mutmut's copy (mutants/).
VECTORS = next(
    (
        folder / "shared" / "testdata" / "rfc6962"
        for folder in Path(__file__).resolve().parents
        if (folder / "shared" / "testdata" / "rfc6962").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "testdata" / "rfc6962",
)


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


# certificate-transparency's reference test tree (merkle_tree_test): eight leaves of
# these bytes, and the root of every prefix of it. Hashing a leaf or a node another way
# (another prefix byte, another order) would still agree with itself and with the
# verifier built alongside; only known answers catch it.
REFERENCE_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
REFERENCE_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_leaf_hashes_and_roots_are_the_reference_implementations():
    hashes = [merkle.leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    nodes = merkle.new_nodes(0, hashes, lambda keys: {})

    def fetch(keys):
        return {k: nodes[k] for k in keys}

    assert [merkle.root(size, fetch).hex() for size in range(1, 9)] == REFERENCE_ROOTS
    assert [root_of(hashes[:size]).hex() for size in range(1, 9)] == REFERENCE_ROOTS
    assert merkle.root(0, fetch).hex() == merkle.empty_root().hex() == EMPTY_ROOT


def test_proofs_are_refused_outside_the_tree():
    _, fetch = _stored(5)
    for index in (-1, 5, 6):
        with pytest.raises(ValueError, match=r"^index must be inside the tree$"):
            merkle.inclusion_proof(index, 5, fetch)
    for first, second in ((0, 5), (-1, 5), (6, 5)):
        with pytest.raises(ValueError, match=r"^sizes must satisfy 0 < first <= second$"):
            merkle.consistency_proof(first, second, fetch)
    assert merkle.consistency_proof(5, 5, fetch) == []
    assert len(merkle.inclusion_proof(4, 5, fetch)) == 1  # the last leaf's sibling: the first 4

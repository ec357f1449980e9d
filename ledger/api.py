"""The auditors' JSON API over the Merkle log. Anyone may call it; no account needed."""

from __future__ import annotations

import base64

from flask import Blueprint, abort, jsonify
from sqlalchemy import select

from campaigns.api import public_campaign
from core.api import limit_api, newest_first, next_link, per_page
from core.urls import public_url_for, query_int
from ledger import log, merkle, signing
from ledger.disbursements import Disbursement, DisbursementStatus

bp = Blueprint("ledger_api", __name__, url_prefix="/api/v1/ledger")
limit_api(bp)
# What the ledger says about one campaign, beside the campaign's own API.
campaign_bp = Blueprint("ledger_campaign_api", __name__, url_prefix="/api/v1")
limit_api(campaign_bp)

MAX_ENTRIES = 1000


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


# Far above any ledger's size; bounds the digits read from a query string.
MAX_INDEX = 10**12


def _int_arg(name: str, *, default: int | None = None, minimum: int = 0) -> int:
    return query_int(name, default=default, minimum=minimum, maximum=MAX_INDEX)


def _text(body: str):
    return body, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/checkpoint")
def checkpoint():
    latest = log.latest_checkpoint()
    if latest is None:
        # A new deployment: sign the log as it is (empty until money moves), so the
        # checkpoint URL always answers with something a verifier can check.
        log.sequence()
        latest = log.latest_checkpoint()
    assert latest is not None
    return _text(latest.note)


@bp.get("/key")
def key():
    return _text(signing.verifier_key() + "\n")


@bp.get("/entries")
def entries():
    size = log.tree_size()
    start = _int_arg("start", default=0)
    end = _int_arg("end", default=min(size, start + 100))
    if end < start:
        abort(400, description="end must not be below start")
    if end > size:
        abort(400, description=f"end must be at most the tree size ({size})")
    if end - start > MAX_ENTRIES:
        abort(400, description=f"at most {MAX_ENTRIES} entries per request")
    return jsonify(
        tree_size=size,
        entries=[
            {"index": index, "leaf": _b64(leaf), "transaction": doc}
            for index, leaf, doc in log.entries(start, end)
        ],
    )


@bp.get("/proof/inclusion")
def inclusion():
    size = log.tree_size()
    tree = _int_arg("size", default=size, minimum=1)
    index = _int_arg("index")
    if tree > size:
        abort(400, description=f"size must be at most the tree size ({size})")
    if index >= tree:
        abort(400, description="index must be below size")
    [(_, leaf, _doc)] = log.entries(index, index + 1)
    proof = merkle.inclusion_proof(index, tree, log.fetch_nodes)
    return jsonify(
        index=index,
        size=tree,
        leaf=_b64(leaf),
        leaf_hash=_b64(merkle.leaf_hash(leaf)),
        root=_b64(_root(tree)),
        proof=[_b64(p) for p in proof],
    )


def _root(size: int) -> bytes:
    """The signed root when a checkpoint covers this size, else computed from nodes."""
    latest = log.latest_checkpoint()
    if latest is not None and latest.tree_size == size:
        return bytes(latest.root_hash)
    return merkle.root(size, log.fetch_nodes)


@bp.get("/proof/consistency")
def consistency():
    size = log.tree_size()
    first = _int_arg("first", minimum=1)
    second = _int_arg("second", default=size, minimum=1)
    if second > size:
        abort(400, description=f"second must be at most the tree size ({size})")
    if first > second:
        abort(400, description="first must not be above second")
    proof = merkle.consistency_proof(first, second, log.fetch_nodes)
    return jsonify(
        first=first,
        second=second,
        first_root=_b64(_root(first)),
        second_root=_b64(_root(second)),
        proof=[_b64(p) for p in proof],
    )


@campaign_bp.get("/campaigns/<slug>/disbursements")
def list_disbursements(slug: str):
    """Approved disbursements, newest first: payee (or the number of payees of a batch),
    purpose, amount, the receipt and the ledger reference."""
    campaign = public_campaign(slug)
    items, cursor = newest_first(
        select(Disbursement).where(
            Disbursement.campaign_id == campaign.id,
            Disbursement.status == DisbursementStatus.APPROVED,
        ),
        Disbursement.id,
        per_page(),
    )
    return jsonify(
        disbursements=[
            {
                "reference": d.reference,
                "payee": d.payee or None,
                "payees": d.payee_count,
                "purpose": d.purpose,
                "amount": d.money.as_json(),
                "approved_at": d.decided_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                if d.decided_at
                else None,
                "receipt_url": public_url_for("disbursements.receipt", name=d.receipt_file),
                "commitment": d.commitment or None,
            }
            for d in items
        ],
        next_cursor=cursor,
        next=next_link(cursor),
    )

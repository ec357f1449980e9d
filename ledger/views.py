"""Public ledger pages, exports and feeds for auditors (no account needed)."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, abort, render_template, request, stream_with_context, url_for
from sqlalchemy import and_, func, select

from campaigns.models import Campaign, CampaignStatus
from core.extensions import db
from core.money import Money
from core.page_cache import cached_page
from core.text import spreadsheet_row
from ledger import log, merkle, signing
from ledger.models import EntryKind, LedgerLeaf, LedgerPosting, LedgerTransaction
from ledger.services import campaign_account

bp = Blueprint("ledger", __name__)
PAGE_SIZE = 50
KINDS = [k.value for k in EntryKind]


def _date(name: str) -> datetime | None:
    raw = request.args.get(name) or ""
    if not raw:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        abort(400, description=f"{name} must be a date like 2026-11-21")


def _filters(query):
    kind = request.args.get("kind") or ""
    if kind and kind not in KINDS:
        abort(400, description=f"kind must be one of {', '.join(KINDS)}")
    if kind:
        query = query.where(LedgerTransaction.kind == kind)
    since, until = _date("from"), _date("to")
    if since:
        query = query.where(LedgerTransaction.created_at >= since)
    if until:
        query = query.where(LedgerTransaction.created_at < until + timedelta(days=1))
    return query, {
        "kind": kind,
        "from": request.args.get("from", ""),
        "to": request.args.get("to", ""),
    }


def _public_campaign(slug: str) -> Campaign:
    campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
    if campaign is None or campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SUSPENDED):
        abort(404)
    return campaign


@bp.get("/ledger")
@cached_page
def global_ledger():
    query, filters = _filters(
        select(LedgerLeaf.leaf_index, LedgerTransaction, Campaign.slug, Campaign.title)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerLeaf.transaction_id)
        .outerjoin(Campaign, Campaign.id == LedgerTransaction.campaign_id)
        .order_by(LedgerLeaf.leaf_index.desc())
    )
    page = db.paginate(
        query, per_page=PAGE_SIZE, max_per_page=PAGE_SIZE, error_out=False, count=True
    )
    rows = db.session.execute(query.limit(PAGE_SIZE).offset((page.page - 1) * PAGE_SIZE)).all()
    amounts = _amounts([tx.id for _, tx, _, _ in rows])
    return render_template(
        "ledger/global.html",
        rows=rows,
        amounts=amounts,
        page=page,
        filters=filters,
        kinds=KINDS,
        checkpoint=log.latest_checkpoint(),
        key=signing.verifier_key(),
    )


def _amounts(transaction_ids: list[int]) -> dict[int, list[Money]]:
    """What each transaction moved: the sum of its positive postings per currency."""
    rows = db.session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.currency, func.sum(LedgerPosting.amount))
        .where(LedgerPosting.transaction_id.in_(transaction_ids), LedgerPosting.amount > 0)
        .group_by(LedgerPosting.transaction_id, LedgerPosting.currency)
    ).all()
    out: dict[int, list[Money]] = {}
    for tx_id, currency, total in rows:
        out.setdefault(tx_id, []).append(Money(int(total), currency))
    return out


@bp.get("/c/<slug>/ledger")
@cached_page
def campaign_ledger(slug: str):
    campaign = _public_campaign(slug)
    account = campaign_account(campaign.id)
    running = func.sum(LedgerPosting.amount).over(order_by=LedgerLeaf.leaf_index)
    inner = (
        select(
            LedgerLeaf.leaf_index.label("leaf_index"),
            LedgerTransaction.id.label("tx_id"),
            LedgerPosting.amount.label("amount"),
            running.label("balance"),
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerLeaf.transaction_id)
        .join(
            LedgerPosting,
            and_(
                LedgerPosting.transaction_id == LedgerTransaction.id,
                LedgerPosting.account == account,
            ),
        )
        .where(LedgerTransaction.campaign_id == campaign.id)
    ).subquery()
    query, filters = _filters(
        select(inner.c.leaf_index, inner.c.amount, inner.c.balance, LedgerTransaction)
        .join(LedgerTransaction, LedgerTransaction.id == inner.c.tx_id)
        .order_by(inner.c.leaf_index.desc())
    )
    page = db.paginate(
        query, per_page=PAGE_SIZE, max_per_page=PAGE_SIZE, error_out=False, count=True
    )
    rows = db.session.execute(query.limit(PAGE_SIZE).offset((page.page - 1) * PAGE_SIZE)).all()
    return render_template(
        "ledger/campaign.html",
        campaign=campaign,
        rows=rows,
        page=page,
        filters=filters,
        kinds=KINDS,
        summary=summary(campaign),
    )


def summary(campaign: Campaign) -> dict[str, Money]:
    from ledger.services import campaign_totals

    totals = campaign_totals(campaign.id)

    def money(kind):
        return Money(abs(totals.get(kind, 0)), campaign.currency)

    return {
        "raised": money(EntryKind.PLEDGE_CHARGE),
        "matched": money(EntryKind.ROUND_MATCH),
        "fees": money(EntryKind.PROCESSOR_FEE),
        "refunds": money(EntryKind.REFUND),
        "disbursed": money(EntryKind.DISBURSEMENT),
        "balance": Money(sum(totals.values()), campaign.currency),
    }


@bp.get("/ledger/entry/<int:index>")
def entry(index: int):
    size = log.tree_size()
    if index >= size:
        abort(404)
    [(_, leaf, doc)] = log.entries(index, index + 1)
    proof = merkle.inclusion_proof(index, size, log.fetch_nodes)
    root = merkle.root(size, log.fetch_nodes)
    from ledger.disbursements import Disbursement

    disbursement = db.session.scalar(
        select(Disbursement).where(Disbursement.reference == doc["reference"])
    )
    return render_template(
        "ledger/entry.html",
        index=index,
        size=size,
        doc=doc,
        leaf=base64.b64encode(leaf).decode(),
        leaf_hash=base64.b64encode(merkle.leaf_hash(leaf)).decode(),
        proof=[base64.b64encode(p).decode() for p in proof],
        root=base64.b64encode(root).decode(),
        key=signing.verifier_key(),
        disbursement=disbursement,
    )


# ---- Exports: streamed, a chunk of entries at a time --------------------------------

CSV_COLUMNS = [
    "index",
    "time",
    "kind",
    "campaign",
    "reference",
    "counterparty",
    "memo",
    "account",
    "amount",
    "currency",
]


def _csv(campaign_id: int | None):
    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for index, _leaf, doc in log.stream_entries(campaign_id=campaign_id):
            for posting in doc["postings"]:
                writer.writerow(
                    spreadsheet_row(
                        [
                            index,
                            doc["time"],
                            doc["kind"],
                            doc["campaign"] or "",
                            doc["reference"],
                            doc["counterparty"],
                            doc["memo"],
                            posting["account"],
                            posting["amount"],
                            posting["currency"],
                        ]
                    )
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    return rows


def json_export(campaign_id: int | None):
    """The JSON export (the whole ledger, or a campaign's part) as a generator of chunks."""

    def chunks():
        checkpoint = log.latest_checkpoint()
        head = {
            "format": "counterfund-ledger-export/1",
            "verifier_key": signing.verifier_key(),
            "checkpoint": checkpoint.note if checkpoint else None,
            "leaf_encoding": "canonical JSON: sorted keys, no whitespace, UTF-8, integers",
        }
        yield json.dumps(head)[:-1] + ', "entries": ['
        first = True
        for index, leaf, doc in log.stream_entries(campaign_id=campaign_id):
            item = {"index": index, "leaf": base64.b64encode(leaf).decode(), "transaction": doc}
            yield ("" if first else ",") + json.dumps(item, ensure_ascii=False)
            first = False
        yield "]}"

    return chunks


def _download(generator, mimetype: str, filename: str) -> Response:
    response = Response(stream_with_context(generator()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/ledger/export.csv")
def export_csv():
    return _download(_csv(None), "text/csv", "counterfund-ledger.csv")


@bp.get("/ledger/export.json")
def export_json():
    return _download(json_export(None), "application/json", "counterfund-ledger.json")


@bp.get("/c/<slug>/ledger/export.csv")
def campaign_export_csv(slug: str):
    campaign = _public_campaign(slug)
    return _download(_csv(campaign.id), "text/csv", f"{campaign.slug}-ledger.csv")


@bp.get("/c/<slug>/ledger/export.json")
def campaign_export_json(slug: str):
    campaign = _public_campaign(slug)
    return _download(json_export(campaign.id), "application/json", f"{campaign.slug}-ledger.json")


# ---- Atom feeds --------------------------------------------------------------------


def _feed(campaign: Campaign | None):
    query = (
        select(LedgerLeaf.leaf_index, LedgerTransaction)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerLeaf.transaction_id)
        .order_by(LedgerLeaf.leaf_index.desc())
        .limit(50)
    )
    if campaign is not None:
        query = query.where(LedgerTransaction.campaign_id == campaign.id)
    rows = db.session.execute(query).all()
    body = render_template(
        "ledger/feed.atom.xml",
        rows=rows,
        campaign=campaign,
        amounts=_amounts([tx.id for _, tx in rows]),
    )
    return Response(body, mimetype="application/atom+xml")


@bp.get("/ledger/feed.atom")
def feed():
    return _feed(None)


@bp.get("/c/<slug>/ledger/feed.atom")
def campaign_feed(slug: str):
    return _feed(_public_campaign(slug))


def entry_url_for_reference(reference: str) -> str | None:
    index = db.session.scalar(
        select(LedgerLeaf.leaf_index)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerLeaf.transaction_id)
        .where(LedgerTransaction.reference == reference)
    )
    return None if index is None else url_for("ledger.entry", index=index)

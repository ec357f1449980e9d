"""Disbursements (two-person rule, receipts) and reconciliation with the provider."""

from __future__ import annotations

import base64
import io

import pytest
import sqlalchemy as sa
from pypdf import PdfWriter
from sqlalchemy import func, select

from core.extensions import db
from core.money import Money
from ledger.disbursements import Disbursement
from tests.factories import (
    join_committee,
    live_campaign,
    login,
    past_deadline,
    pledge,
    register,
    run_sweep,
    submit,
)


def _blank_pdf() -> bytes:
    """A real one-page PDF: receipts are rewritten without their metadata, so they
    must be PDFs a library can read."""
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


PDF = _blank_pdf()


def _funded(app):
    """A settled campaign holding money; the owner org@ and a treasurer tre@."""
    slug = live_campaign(
        app,
        goal="10",
        **{"budget_lines-0-amount": "10", "budget_lines-1-item": "", "budget_lines-1-amount": ""},
    )
    treasurer = app.test_client()
    register(treasurer, email="tre@example.org", name="Treasurer")
    owner = app.test_client()
    login(owner, email="org@example.org")
    join_committee(owner, treasurer, slug, "tre@example.org", "treasurer")
    pledge(app.test_client(), slug, amount="100")
    with app.app_context():
        from campaigns.models import Campaign

        cid = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
    past_deadline(app, cid)
    run_sweep(app)
    return slug, cid, owner, treasurer


def _record(client, slug, amount="40", receipt=PDF, name="invoice.pdf", headers=None):
    return submit(
        client,
        f"/c/{slug}/disbursements/new",
        {
            "payee": "Print Cooperative",
            "purpose": "Strike leaflets",
            "amount": amount,
            "receipt": (io.BytesIO(receipt), name, "application/pdf"),
        },
        content_type="multipart/form-data",
        headers=headers,
    )


def _balance(app, cid):
    from ledger.services import balance

    with app.app_context():
        return balance(f"campaign:{cid}", "EUR")


def test_two_people_move_money_and_the_receipt_is_public(app):
    slug, cid, owner, treasurer = _funded(app)
    before = _balance(app, cid)
    assert _record(treasurer, slug).status_code == 302
    # The treasurer cannot approve their own.
    with app.app_context():
        item = db.session.scalar(select(Disbursement))
    response = submit(
        treasurer,
        f"/c/{slug}/disbursements/{item.id}/approve",
        {},
        form_page=f"/c/{slug}/disbursements",
    )
    assert response.status_code == 302
    assert _balance(app, cid) == before
    # Not public until approved.
    assert "Print Cooperative" not in app.test_client().get(f"/c/{slug}/disbursements").get_data(
        as_text=True
    )
    assert app.test_client().get(f"/ledger/receipts/{item.receipt_file}").status_code == 404
    submit(
        owner,
        f"/c/{slug}/disbursements/{item.id}/approve",
        {},
        form_page=f"/c/{slug}/disbursements",
    )
    assert _balance(app, cid) == before - 4000
    public = app.test_client()
    assert "Print Cooperative" in public.get(f"/c/{slug}/disbursements").get_data(as_text=True)
    receipt = public.get(f"/ledger/receipts/{item.receipt_file}")
    assert receipt.status_code == 200 and receipt.mimetype == "application/pdf"
    assert receipt.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in receipt.headers["Content-Security-Policy"]
    receipt.close()
    ledger_page = public.get(f"/c/{slug}/ledger").get_data(as_text=True)
    assert "disbursement" in ledger_page and "Print Cooperative" in ledger_page
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0


def test_disbursements_above_the_balance_or_badly_formed_are_refused(app):
    slug, cid, _owner, treasurer = _funded(app)
    before = _balance(app, cid)
    for kwargs, message in [
        ({"amount": "1000"}, "cannot be larger"),
        ({"amount": "abc"}, "not a number"),
        ({"receipt": b"<html>nope</html>", "name": "x.pdf"}, "PDF, PNG or JPEG"),
        ({"receipt": b""}, "Attach the receipt"),
    ]:
        response = _record(treasurer, slug, **kwargs)
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    stranger = app.test_client()
    register(stranger, email="x@example.org", name="X")
    assert _record(stranger, slug).status_code == 403
    with app.app_context():
        assert db.session.scalar(select(sa.func.count(Disbursement.id))) == 0
    assert _balance(app, cid) == before


def test_reconciliation_finds_no_difference_then_a_missing_entry(app, backend):
    _slug, _cid, _owner, treasurer = _funded(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ledger", "reconcile"])
    assert result.exit_code == 0, result.output
    assert "No differences" in result.output
    # The provider holds a charge the ledger does not know about.
    provider = app.extensions["payment_backend"].provider
    with app.app_context():
        from payments.models import Pledge

        ref = db.session.scalar(select(Pledge.public_id))
    conn = provider._connection()
    conn.execute(
        "INSERT INTO charges (id, idempotency_key, pledge_ref, customer_id, amount,"
        " currency, fee, status, decline_code, created) VALUES"
        " ('ch_extra', 'manual', ?, 'c', 500, 'EUR', 0, 'succeeded', '', 0)",
        (ref,),
    )
    result = runner.invoke(args=["ledger", "reconcile"])
    assert result.exit_code == 1
    assert "charged more than once" in result.output and "amounts differ" in result.output
    moderator = app.test_client()
    register(moderator, email="mod@example.org", name="Mod")
    runner.invoke(args=["users", "set-moderator", "mod@example.org"])
    page = moderator.get("/moderation/reconciliation").get_data(as_text=True)
    assert "charged more than once" in page
    assert treasurer.get("/moderation/reconciliation").status_code == 403


def test_refund_once_at_the_provider_and_in_the_ledger(app):
    slug, cid, _owner, _treasurer = _funded(app)
    with app.app_context():
        from payments.models import Pledge

        pledge_ref = db.session.scalar(select(Pledge.public_id))
    runner = app.test_cli_runner()
    # The campaign holds the pledge less the processor's fee: not enough to refund it.
    refused = runner.invoke(args=["refund", pledge_ref])
    assert refused.exit_code != 0 and "no longer holds enough" in refused.output
    provider = app.extensions["payment_backend"].provider
    assert provider._connection().execute("SELECT count(*) FROM refunds").fetchone()[0] == 0
    with app.app_context():
        from core.money import Money as M
        from ledger.models import EntryKind as K
        from ledger.services import record

        record(
            K.ADJUSTMENT,
            campaign_id=cid,
            reference="platform-top-up",
            postings=[("platform", M(-500, "EUR")), (f"campaign:{cid}", M(500, "EUR"))],
            counterparty="platform",
            memo="Covering a refund's fee",
        )
        db.session.commit()
    before = _balance(app, cid)
    result = runner.invoke(args=["refund", pledge_ref, "--reason", "Duplicate gift"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["refund", pledge_ref])
    assert again.exit_code != 0 and "already refunded" in again.output
    assert _balance(app, cid) == before - 10000
    conn = provider._connection()
    assert tuple(conn.execute("SELECT count(*), sum(amount) FROM refunds").fetchone()) == (1, 10000)
    with app.app_context():
        from payments.models import Pledge

        assert db.session.scalar(select(Pledge.status)) == "refunded"
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
    assert runner.invoke(args=["ledger", "reconcile"]).exit_code == 0
    page = app.test_client().get(f"/c/{slug}/ledger").get_data(as_text=True)
    assert "refund" in page


# ---- Batches: strike pay to many people, their names kept by the committee ------------

STRIKERS = ["Amal Haddad", "Bruno Costa", "Chidi Eze"]


def _record_batch(client, slug, lines, amount, **extra):
    return submit(
        client,
        f"/c/{slug}/disbursements/new",
        {
            "payee": "",
            "batch": lines,
            "purpose": "Strike pay, week 2",
            "amount": amount,
            "receipt": (io.BytesIO(PDF), "transfers.pdf", "application/pdf"),
            **extra,
        },
        content_type="multipart/form-data",
    )


def test_a_batch_shows_the_public_its_total_count_and_commitment_never_the_names(app, tmp_path):
    import json

    from tests.test_ledger import _verify_offline

    slug, _cid, owner, treasurer = _funded(app)
    lines = "\n".join(
        f"{name}; {amount}" for name, amount in zip(STRIKERS, ("20", "15", "25,5"), strict=True)
    )
    # In German, amounts are typed with a decimal comma.
    treasurer.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"
    assert _record_batch(treasurer, slug, lines, "60,50").status_code == 302
    with app.app_context():
        item = db.session.scalar(select(Disbursement))
        assert (item.payee_count, item.amount, len(item.commitment)) == (3, 6050, 64)
    submit(
        owner,
        f"/c/{slug}/disbursements/{item.id}/approve",
        {},
        form_page=f"/c/{slug}/disbursements",
    )
    public = app.test_client()
    pages = [
        public.get(f"/c/{slug}/disbursements").get_data(as_text=True),
        public.get(f"/c/{slug}/ledger").get_data(as_text=True),
        public.get("/ledger/export.json").get_data(as_text=True),
        public.get("/ledger/export.csv").get_data(as_text=True),
        public.get("/ledger/feed.atom").get_data(as_text=True),
    ]
    for page in pages:
        assert not any(name in page for name in STRIKERS)
    assert "3 payees (batch)" in pages[0] and item.commitment in pages[0]
    assert item.commitment in pages[2]
    # The list is the committee's: a visitor gets nothing, the owner each line.
    assert public.get(f"/c/{slug}/disbursements/{item.id}/lines").status_code == 302
    listing = owner.get(f"/c/{slug}/disbursements/{item.id}/lines").get_data(as_text=True)
    assert all(name in listing for name in STRIKERS)
    note = public.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    key = public.get("/api/v1/ledger/key").get_data(as_text=True).strip()

    def verify(line: str):
        return _verify_offline(tmp_path, key, note, export=pages[2], batch_line=line)

    lines_seen = []
    for position, name in enumerate(STRIKERS):
        receipt = owner.get(f"/c/{slug}/disbursements/{item.id}/lines/{position}.json")
        lines_seen.append(receipt.get_data(as_text=True))
        assert name in json.loads(base64.b64decode(json.loads(receipt.data)["leaf"]))["name"]
        checked = verify(lines_seen[-1])
        assert checked.returncode == 0, checked.stderr
    # A forged line (another name, the same proof) fails.
    forged = json.loads(lines_seen[0])
    leaf = json.loads(base64.b64decode(forged["leaf"]))
    leaf["name"] = "Someone Else"
    forged["leaf"] = base64.b64encode(
        json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
    ).decode()
    assert verify(json.dumps(forged)).returncode == 1
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0


@pytest.mark.parametrize(
    ("lines", "amount", "problem"),
    [
        ("Amal Haddad 20\nBruno Costa; 15", "35", "Line 1: write"),
        ("Amal Haddad; 20\nBruno Costa; fifteen", "35", "Line 2:"),
        ("Amal Haddad; 20", "20", "at least two people"),
        ("Amal Haddad; 20\nBruno Costa; 15", "36", "add up to"),
        ("Amal Haddad; 20\nBruno Costa; 0", "20", "more than zero"),
    ],
)
def test_a_batch_that_cannot_be_read_is_refused_and_changes_nothing(app, lines, amount, problem):
    slug, _cid, _owner, treasurer = _funded(app)
    refused = _record_batch(treasurer, slug, lines, amount)
    assert refused.status_code == 422 and problem in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Disbursement.id))) == 0


def test_a_treasurer_is_told_what_the_campaign_holds_in_their_locale(app):
    """The balance quoted on the dashboard and in a refusal is written as the treasurer
    reads amounts ("€98.50" is no German number)."""
    slug, cid, _owner, treasurer = _funded(app)
    german = {"Accept-Language": "de"}
    held = Money(_balance(app, cid), "EUR")
    dashboard = treasurer.get("/dashboard", headers=german).get_data(as_text=True)
    assert held.format("de") in dashboard
    assert held.format("en") not in dashboard
    response = _record(treasurer, slug, amount="1.000", headers=german)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert held.format("de") in page
    assert held.format("en") not in page
    assert _balance(app, cid) == held.amount

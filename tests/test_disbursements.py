"""Disbursements (two-person rule, receipts) and reconciliation with the provider."""

from __future__ import annotations

import io

import sqlalchemy as sa
from pypdf import PdfWriter
from sqlalchemy import select

from core.extensions import db
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


def _record(client, slug, amount="40", receipt=PDF, name="invoice.pdf"):
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

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from campaigns.models import Campaign, CampaignStatus, OrganizerRole, Permission, role_can
from core.extensions import db
from core.i18n import current_locale
from core.jobs import enqueue_after_commit
from core.money import Money, MoneyError
from core.work import flash_transaction, form_transaction
from ledger import batches, disbursements
from ledger.disbursements import Disbursement, DisbursementStatus
from ledger.forms import DecisionForm, DisbursementForm
from ledger.jobs import sequence_job

bp = Blueprint("disbursements", __name__)


def _campaign(slug: str) -> Campaign:
    campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
    if campaign is None or campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SUSPENDED):
        abort(404)
    return campaign


@bp.get("/c/<slug>/disbursements")
def listing(slug: str):
    campaign = _campaign(slug)
    role = campaign.role_of(current_user)
    query = select(Disbursement).where(Disbursement.campaign_id == campaign.id)
    if role is None:
        query = query.where(Disbursement.status == DisbursementStatus.APPROVED)
    items = db.session.scalars(query.order_by(Disbursement.id.desc())).all()
    return render_template(
        "ledger/disbursements.html",
        campaign=campaign,
        items=items,
        role=role,
        form=DecisionForm(),
        roles=OrganizerRole,
    )


@bp.route("/c/<slug>/disbursements/new", methods=["GET", "POST"])
@login_required
def new(slug: str):
    campaign = _campaign(slug)
    if not role_can(campaign.role_of(current_user), Permission.RECORD_DISBURSEMENT):
        abort(403)
    form = DisbursementForm()
    if form.validate_on_submit():
        batch = _batch_from(form, campaign.currency)
        amount = None
        try:
            amount = Money.parse(form.amount.data, campaign.currency, current_locale())
        except MoneyError as exc:
            form.amount.errors.append(str(exc))
        if amount is not None and not (form.payee.errors or form.batch.errors):
            stored = None
            with form_transaction(form) as work:
                upload = form.receipt.data
                stored = disbursements.store_receipt(upload.stream if upload else _Empty())
                disbursements.record(
                    campaign,
                    current_user,
                    payee=form.payee.data or "",
                    purpose=form.purpose.data,
                    amount=amount,
                    receipt=stored,
                    batch=batch,
                )
            if not work.committed:
                if stored:
                    (disbursements.receipts_folder() / stored[0]).unlink(missing_ok=True)
            else:
                flash(
                    _(
                        "Recorded. Another organizer must approve it before it is paid out "
                        "of the campaign's balance."
                    ),
                    "success",
                )
                return redirect(url_for("disbursements.listing", slug=slug))
    return render_template("ledger/disbursement_form.html", campaign=campaign, form=form), (
        422 if request.method == "POST" else 200
    )


def _batch_from(form: DisbursementForm, currency: str) -> list[batches.Line] | None:
    """The batch's lines, or None for one payee; marks the form when neither is given
    or the list cannot be read."""
    if not (form.batch.data or "").strip():
        if not (form.payee.data or "").strip():
            form.payee.errors.append(_("Say who was paid, or list the people of a batch."))
        return None
    try:
        return batches.lines_for(batches.parse(form.batch.data, currency, current_locale()))
    except batches.BatchError as exc:
        form.batch.errors.append(str(exc))
        return None


@bp.get("/c/<slug>/disbursements/<int:item_id>/lines")
@login_required
def batch_lines(slug: str, item_id: int):
    """A batch's list, for its committee only, with each line's receipt to hand over."""
    campaign, item = _batch(slug, item_id)
    return render_template(
        "ledger/batch_lines.html",
        campaign=campaign,
        item=item,
        lines=batches.stored_lines(item.id, item.currency),
    )


@bp.get("/c/<slug>/disbursements/<int:item_id>/lines/<int:position>.json")
@login_required
def batch_line_receipt(slug: str, item_id: int, position: int):
    _campaign_row, item = _batch(slug, item_id)
    lines = batches.stored_lines(item.id, item.currency)
    if not 0 <= position < len(lines):
        abort(404)
    response = jsonify(batches.line_receipt(lines, position))
    response.headers["Content-Disposition"] = f'attachment; filename="line-{position}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _batch(slug: str, item_id: int) -> tuple[Campaign, Disbursement]:
    campaign = _campaign(slug)
    if campaign.role_of(current_user) is None:
        abort(404)  # the names are the committee's alone
    item = db.session.get(Disbursement, item_id)
    if item is None or item.campaign_id != campaign.id or not item.commitment:
        abort(404)
    return campaign, item


class _Empty:
    def read(self, _size):
        return b""


@bp.post("/c/<slug>/disbursements/<int:item_id>/<any(approve, reject):decision>")
@login_required
def decide(slug: str, item_id: int, decision: str):
    campaign = _campaign(slug)
    item = db.session.get(Disbursement, item_id)
    if item is None or item.campaign_id != campaign.id:
        abort(404)
    if DecisionForm().validate_on_submit():
        with flash_transaction() as work:
            if decision == "approve":
                disbursements.approve(item, current_user)
                enqueue_after_commit(sequence_job)
            else:
                disbursements.reject(item, current_user)
        if work.committed:
            flash(
                _("Approved: it is on the public ledger.")
                if decision == "approve"
                else _("Rejected."),
                "success",
            )
    return redirect(url_for("disbursements.listing", slug=slug))


@bp.get("/ledger/receipts/<name>")
def receipt(name: str):
    item = db.session.scalar(select(Disbursement).where(Disbursement.receipt_file == name))
    if item is None:
        abort(404)
    if item.status != DisbursementStatus.APPROVED and item.campaign.role_of(current_user) is None:
        abort(404)
    response = send_from_directory(
        disbursements.receipts_folder(), name, mimetype=item.receipt_type, max_age=3600
    )
    # Never rendered as a page of ours: a PDF downloads, an image shows, nothing runs.
    disposition = "attachment" if item.receipt_type == "application/pdf" else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{name}"'
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response

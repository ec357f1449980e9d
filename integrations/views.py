from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from campaigns.forms import ConfirmForm
from campaigns.models import Campaign, Permission, role_can
from campaigns.services import campaign_for_page
from core.api import limit_api
from core.extensions import db
from core.work import flash_transaction, form_transaction
from integrations import dump, openapi, tokens, webhooks
from integrations.forms import EVENT_LABELS, TokenForm, WebhookForm
from integrations.models import SCOPE_LABELS, WebhookEvent

bp = Blueprint("integrations", __name__)
api_bp = Blueprint("integrations_api", __name__, url_prefix="/api/v1")
limit_api(api_bp)


@api_bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi.document())


@bp.get("/api")
def reference():
    """The API's reference, rendered from the same document (no third-party assets)."""
    document = openapi.document()
    return render_template(
        "integrations/reference.html", document=document, schemas=document["components"]["schemas"]
    )


@bp.get("/data/" + dump.FILENAME)
def open_data():
    """The whole public dataset, rebuilt daily by the sweep (here, if it never ran)."""
    target = dump.path()
    if not target.exists():
        dump.build()
    response = send_file(
        target,
        mimetype="application/zip",
        download_name=dump.FILENAME,
        as_attachment=True,
        max_age=3600,
    )
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


# ---- Personal API tokens ------------------------------------------------------------------


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def account_tokens():
    form = TokenForm()
    secret = None
    if form.validate_on_submit():
        with form_transaction(form, "scopes") as work:
            _token, secret = tokens.create(
                current_user, form.name.data, form.scopes.data, int(form.days.data)
            )
        if work.committed:
            form = TokenForm(formdata=None)
    return render_template(
        "integrations/tokens.html",
        form=form,
        secret=secret,
        tokens=tokens.tokens_of(current_user),
        scope_labels=SCOPE_LABELS,
        confirm=ConfirmForm(),
    ), (422 if form.errors else 200)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    if ConfirmForm().validate_on_submit():
        tokens.revoke(current_user, token_id)
        db.session.commit()
        flash(_("The token is revoked: it no longer works."), "info")
    return redirect(url_for("integrations.account_tokens"))


# ---- Webhooks ----------------------------------------------------------------------------


def _editable_campaign(slug: str) -> Campaign:
    campaign = campaign_for_page(slug)
    if campaign is None:
        abort(404)
    role = campaign.role_of(current_user)
    if role is None:
        abort(404 if campaign.is_draft else 403)
    if not role_can(role, Permission.EDIT):
        abort(403)
    return campaign


@bp.route("/c/<slug>/webhooks", methods=["GET", "POST"])
@login_required
def campaign_webhooks(slug: str):
    campaign = _editable_campaign(slug)
    form = WebhookForm()
    if form.validate_on_submit():
        with form_transaction(form, "url") as work:
            webhooks.add_endpoint(campaign, current_user.id, form.url.data, form.events.data)
        if work.committed:
            flash(_("Webhook added."), "success")
            return redirect(url_for("integrations.campaign_webhooks", slug=slug))
    endpoints = webhooks.endpoints_of(campaign)
    return render_template(
        "integrations/webhooks.html",
        campaign=campaign,
        form=form,
        endpoints=[(e, webhooks.deliveries_of(e)) for e in endpoints],
        event_labels=EVENT_LABELS,
        confirm=ConfirmForm(),
    ), (422 if form.errors else 200)


@bp.post("/c/<slug>/webhooks/<int:endpoint_id>/test")
@login_required
def test_webhook(slug: str, endpoint_id: int):
    campaign = _editable_campaign(slug)
    if ConfirmForm().validate_on_submit():
        with flash_transaction() as work:
            endpoint = webhooks.endpoint_of(campaign, endpoint_id)
            webhooks.queue_one(endpoint, WebhookEvent.TEST, {"campaign": {"slug": campaign.slug}})
        if work.committed:
            flash(_("Test event sent: its delivery shows below."), "success")
    return redirect(url_for("integrations.campaign_webhooks", slug=slug))


@bp.post("/c/<slug>/webhooks/<int:endpoint_id>/remove")
@login_required
def remove_webhook(slug: str, endpoint_id: int):
    campaign = _editable_campaign(slug)
    if ConfirmForm().validate_on_submit():
        with flash_transaction() as work:
            webhooks.remove_endpoint(campaign, endpoint_id)
        if work.committed:
            flash(_("Webhook removed."), "info")
    return redirect(url_for("integrations.campaign_webhooks", slug=slug))

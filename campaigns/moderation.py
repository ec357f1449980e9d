"""Moderators see reports and suspend or restore campaigns."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from campaigns import services
from campaigns.forms import ConfirmForm, SuspendForm
from campaigns.models import Campaign
from core.extensions import db
from core.work import flash_transaction, form_transaction

bp = Blueprint("moderation", __name__, url_prefix="/moderation")


def moderator_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_moderator:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _campaign(slug: str) -> Campaign:
    campaign = db.session.scalar(db.select(Campaign).where(Campaign.slug == slug))
    if campaign is None:
        abort(404)
    return campaign


@bp.get("/")
@moderator_required
def reports():
    suspended = db.session.scalars(
        db.select(Campaign).where(Campaign.status == "suspended").order_by(Campaign.suspended_at)
    ).all()
    return render_template(
        "campaigns/moderation.html",
        reports=services.open_reports(),
        suspended=suspended,
        form=ConfirmForm(),
        released_by_suspension=services.released_by_suspension,
    )


@bp.route("/c/<slug>/suspend", methods=["GET", "POST"])
@moderator_required
def suspend(slug: str):
    """GET: what suspending does, with the reason to give; POST: suspend, and the
    organizers receive the reason."""
    campaign = _campaign(slug)
    form = SuspendForm()
    if form.validate_on_submit():
        with form_transaction(form, "reason") as work:
            services.suspend(campaign, form.reason.data)
        if work.committed:
            flash(_("Campaign suspended. Its organizers have been told why."), "info")
            return redirect(url_for("moderation.reports"))
    return render_template(
        "core/confirm.html",
        form=form,
        heading=_("Suspend “%(title)s”?", title=campaign.title),
        facts=[],
        consequences=[
            _(
                "The campaign disappears from public pages and takes no pledges. Supporters "
                "can still cancel. If it is still suspended at its deadline, every pledge is "
                "released and nobody is charged. The organizers receive your reason by email."
            )
        ],
        reason_label=True,
        button=_("Suspend"),
        action=url_for("moderation.suspend", slug=slug),
        back=url_for("moderation.reports"),
        danger=True,
    ), (422 if form.errors else 200)


@bp.post("/c/<slug>/restore")
@moderator_required
def restore(slug: str):
    campaign = _campaign(slug)
    if ConfirmForm().validate_on_submit():
        with flash_transaction() as work:
            services.restore(campaign)
        if work.committed:
            flash(_("Campaign restored."), "success")
    return redirect(url_for("moderation.reports"))


@bp.post("/c/<slug>/dismiss")
@moderator_required
def dismiss(slug: str):
    campaign = _campaign(slug)
    if ConfirmForm().validate_on_submit():
        services.dismiss_reports(campaign)
        db.session.commit()
        flash(_("Reports dismissed."), "info")
    return redirect(url_for("moderation.reports"))

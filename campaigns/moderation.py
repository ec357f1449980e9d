"""Moderators see reports and suspend or restore campaigns."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from campaigns import services
from campaigns.forms import ConfirmForm
from campaigns.models import Campaign
from core.extensions import db
from core.work import flash_transaction

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


@bp.post("/c/<slug>/suspend")
@moderator_required
def suspend(slug: str):
    campaign = _campaign(slug)
    form = ConfirmForm()
    if form.validate_on_submit():
        with flash_transaction() as work:
            services.suspend(campaign, form.reason.data or "")
        if work.committed:
            flash(_("Campaign suspended."), "info")
    return redirect(url_for("moderation.reports"))


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

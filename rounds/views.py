"""Matching rounds' pages: the public list and page, opening a round, the committee's
page (applications, the pool, invitations), finalising, and applying."""

from __future__ import annotations

from datetime import UTC

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from wtforms import SelectChoice

from campaigns.forms import ConfirmForm
from campaigns.models import Campaign
from core.extensions import db
from core.i18n import current_locale
from core.markdown import render_markdown
from core.money import Money, MoneyError
from core.page_cache import cached_page
from core.signed import LinkError
from core.work import RuleError, flash_transaction, form_transaction
from rounds import services
from rounds.forms import ApplyForm, InviteForm, PoolForm, RefuseForm, RoundForm
from rounds.models import ROUND_ROLE_LABELS, Round, RoundPermission, RoundRole, RoundStatus

bp = Blueprint("rounds", __name__)


def _round(round_id: int) -> Round:
    return db.get_or_404(Round, round_id)


def _member_round(round_id: int, permission: RoundPermission | None = None) -> Round:
    round_ = _round(round_id)
    if round_.role_of(current_user) is None:
        abort(403)
    if permission is not None and not round_.can(current_user, permission):
        abort(403)
    return round_


@bp.get("/rounds")
@cached_page
def listing():
    return render_template("rounds/listing.html", rounds=services.public_rounds())


@bp.get("/rounds/<int:round_id>")
@cached_page
def detail(round_id: int):
    round_ = _round(round_id)
    apply_form = None
    if current_user.is_authenticated and round_.public_status == RoundStatus.OPEN:
        apply_form = ApplyForm()
        apply_form.campaign.choices = [
            SelectChoice(str(c.id), c.title)
            for c in services.eligible_campaigns(round_, current_user)
        ]
    counted = services.contributions(round_)
    return render_template(
        "rounds/detail.html",
        round=round_,
        role=round_.role_of(current_user),
        description=render_markdown(round_.description),
        sources=services.source_links(round_.sources),
        matches=services.matches(round_, counted),
        counted=counted,
        apply_form=apply_form,
    )


@bp.route("/rounds/new", methods=["GET", "POST"])
@login_required
def new():
    form = RoundForm()
    if form.validate_on_submit() and (amounts := form.amounts()) is not None:
        draft = services.RoundDraft(
            name=form.name.data.strip(),
            funder=form.funder.data.strip(),
            description=form.description.data or "",
            sources=form.sources.data or "",
            currency=form.currency.data,
            rule=form.rule.data,
            opens_at=form.opens_at.data.replace(tzinfo=UTC),
            closes_at=form.closes_at.data.replace(tzinfo=UTC),
            ratio_bp=(form.ratio_percent.data or 100) * 100,
            cap_per_pledge=amounts["cap_per_pledge"],
            cap_per_backer=amounts["cap_per_backer"],
            cap_per_campaign=amounts["cap_per_campaign"],
            max_share_bp=form.max_share_percent.data * 100 if form.max_share_percent.data else None,
            min_contribution=amounts["min_contribution"] or 0,
        )
        with form_transaction(form, "name") as work:
            round_ = services.open_round(current_user, draft)
        if work.committed:
            flash(_("The round is open. Record the pool's money on its committee page."), "success")
            return redirect(url_for("rounds.manage", round_id=round_.id))
    return render_template("rounds/form.html", form=form), (422 if form.errors else 200)


@bp.post("/rounds/<int:round_id>/apply")
@login_required
def apply(round_id: int):
    round_ = _round(round_id)
    form = ApplyForm()
    form.campaign.choices = [
        SelectChoice(str(c.id), c.title) for c in services.eligible_campaigns(round_, current_user)
    ]
    if form.validate_on_submit():
        campaign = db.session.get(Campaign, int(form.campaign.data))
        with flash_transaction() as work:
            if campaign is None:
                raise RuleError(_("That campaign cannot apply to this round."))
            services.apply(round_, campaign, current_user)
        if work.committed:
            flash(_("Applied. The round's curators will accept or refuse it."), "success")
    else:
        flash(_("That campaign cannot apply to this round."), "error")
    return redirect(url_for("rounds.detail", round_id=round_id))


@bp.get("/rounds/<int:round_id>/manage")
@login_required
def manage(round_id: int):
    round_ = _member_round(round_id)
    return _manage_page(round_, PoolForm(), InviteForm())


def _manage_page(round_: Round, pool_form: PoolForm, invite_form: InviteForm, status=200):
    return render_template(
        "rounds/manage.html",
        round=round_,
        role=round_.role_of(current_user),
        can=lambda permission: round_.can(current_user, permission),
        pool_form=pool_form,
        invite_form=invite_form,
        refuse_form=RefuseForm(),
        confirm=ConfirmForm(),
        pool_left=services.ledger.balance(
            services.ledger.round_account(round_.id), round_.currency
        ),
    ), status


@bp.post("/rounds/<int:round_id>/pool")
@login_required
def record_pool(round_id: int):
    round_ = _member_round(round_id, RoundPermission.RECORD_POOL)
    form = PoolForm()
    if form.validate_on_submit():
        try:
            amount = Money.parse(form.amount.data, round_.currency, current_locale())
        except MoneyError as exc:
            form.amount.errors = [str(exc)]
        else:
            with form_transaction(form, "amount") as work:
                services.record_pool(round_, amount, form.receipt.data)
            if work.committed:
                flash(_("Recorded on the ledger."), "success")
                return redirect(url_for("rounds.manage", round_id=round_id))
    return _manage_page(round_, form, InviteForm(), 422)


@bp.post("/rounds/<int:round_id>/invite")
@login_required
def invite(round_id: int):
    round_ = _member_round(round_id, RoundPermission.MANAGE_TEAM)
    form = InviteForm()
    if form.validate_on_submit():
        with form_transaction(form, "email") as work:
            services.invite(round_, current_user, form.email.data, form.role.data)
        if work.committed:
            flash(
                _(
                    "We have emailed an invitation to %(email)s. They join the committee "
                    "once they accept it.",
                    email=form.email.data.strip(),
                ),
                "success",
            )
            return redirect(url_for("rounds.manage", round_id=round_id))
    return _manage_page(round_, PoolForm(), form, 422)


@bp.post("/rounds/<int:round_id>/entries/<int:entry_id>/accept")
@login_required
def accept(round_id: int, entry_id: int):
    round_ = _member_round(round_id, RoundPermission.CURATE)
    if ConfirmForm().validate_on_submit():
        with flash_transaction() as work:
            services.decide(round_, entry_id, accept=True)
        if work.committed:
            flash(_("Accepted: the campaign shows the round's badge."), "success")
    return redirect(url_for("rounds.manage", round_id=round_id))


@bp.post("/rounds/<int:round_id>/entries/<int:entry_id>/refuse")
@login_required
def refuse(round_id: int, entry_id: int):
    round_ = _member_round(round_id, RoundPermission.CURATE)
    form = RefuseForm()
    if form.validate_on_submit():
        with flash_transaction() as work:
            services.decide(round_, entry_id, accept=False, reason=form.reason.data)
        if work.committed:
            flash(_("Refused."), "info")
    else:
        flash(_("Say why the campaign is refused."), "error")
    return redirect(url_for("rounds.manage", round_id=round_id))


@bp.route("/rounds/<int:round_id>/finalise", methods=["GET", "POST"])
@login_required
def finalise(round_id: int):
    round_ = _member_round(round_id, RoundPermission.FINALISE)
    form = ConfirmForm()
    if form.validate_on_submit():
        with flash_transaction() as work:
            services.finalise(round_)
        if work.committed:
            flash(_("The round is final: the matches are on the ledger."), "success")
            return redirect(url_for("rounds.detail", round_id=round_id))
        return redirect(url_for("rounds.manage", round_id=round_id))
    waiting = services.unsettled(round_)
    consequences = [
        _("Each campaign's match moves from the pool to the campaign, one ledger entry each.")
    ]
    if waiting:
        consequences.append(
            _(
                "Not settled yet, so nothing of theirs counts: %(titles)s.",
                titles=", ".join(c.title for c in waiting),
            )
        )
    return render_template(
        "core/confirm.html",
        heading=_("Finalise “%(name)s”", name=round_.name),
        facts=[
            (_("Pool"), round_.pool),
            *(
                (title, Money(amount, round_.currency))
                for title, amount in _titled(round_, services.matches(round_))
            ),
        ],
        consequences=consequences,
        form=form,
        action=url_for("rounds.finalise", round_id=round_id),
        back=url_for("rounds.manage", round_id=round_id),
        button=_("Finalise the round"),
        reversible=False,
        danger=False,
    )


def _titled(round_: Round, found: dict[str, int]) -> list[tuple[str, int]]:
    return [(e.campaign.title, found.get(e.campaign.slug, 0)) for e in round_.accepted]


@bp.route("/rounds/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str):
    try:
        invited = services.invitation_from(token)
    except LinkError as exc:
        abort(410 if exc.expired else 404)
    if invited is None:
        abort(404, description=_("This invitation was accepted already or no longer exists."))
    if not current_user.is_authenticated:
        flash(_("Log in, or create an account with the invited address, to accept."), "info")
        return redirect(url_for("accounts.login", next=request.path))
    form = ConfirmForm()
    if form.validate_on_submit():
        with flash_transaction() as work:
            services.accept_invitation(invited, current_user)
        if work.committed:
            flash(_("You are on the committee now."), "success")
            return redirect(url_for("rounds.manage", round_id=invited.round_id))
    return render_template(
        "core/confirm.html",
        heading=_("Join the committee of “%(name)s”", name=invited.round.name),
        facts=[(_("Role"), ROUND_ROLE_LABELS[RoundRole(invited.role)])],
        consequences=[],
        form=form,
        action=url_for("rounds.invitation", token=token),
        back=url_for("rounds.detail", round_id=invited.round_id),
        button=_("Join the committee"),
        reversible=True,
        danger=False,
    )

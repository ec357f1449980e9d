from __future__ import annotations

from datetime import UTC

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from wtforms.validators import ValidationError

from campaigns import dashboard as dashboard_items
from campaigns import services
from campaigns.forms import (
    AddOrganizerForm,
    CampaignForm,
    ConfirmForm,
    ReportForm,
    UpdateForm,
    load_campaign_into,
    load_lists_into,
)
from campaigns.media import ImageError, covers_folder, delete_cover, process_cover
from campaigns.models import (
    KIND_LABELS,
    ROLE_LABELS,
    Campaign,
    CampaignStatus,
    OrganizerRole,
    Permission,
    role_can,
)
from core.extensions import db, limiter
from core.i18n import format_money
from core.markdown import render_markdown
from core.page_cache import cached_page
from core.signed import LinkError
from core.text import single_line
from core.work import flash_transaction, form_transaction

bp = Blueprint("campaigns", __name__)


# ---- Public pages ------------------------------------------------------------------


@bp.get("/campaigns")
@cached_page
def listing():
    kind = request.args.get("kind") or None
    if kind and kind not in {k.value for k in KIND_LABELS}:
        kind = None
    status = request.args.get("status", "live")
    if status not in services.PUBLIC_STATUSES:
        status = "live"
    text = (single_line(request.args.get("q")) or "")[:200]
    # A search is ranked by relevance unless the visitor chose another order.
    sort = request.args.get("sort") or ("relevance" if text.strip() else "ending")
    if sort not in services.SORTS:
        sort = "ending"
    page = db.paginate(
        services.search_campaigns(kind=kind, status=status, text=text, sort=sort),
        per_page=current_app.config["PAGE_SIZE"],
        max_per_page=current_app.config["PAGE_SIZE"],
        error_out=False,
    )
    return render_template(
        "campaigns/listing.html",
        page=page,
        kind=kind,
        status=status,
        sort=sort,
        q=text,
        kinds=KIND_LABELS,
    )


@bp.get("/")
@cached_page
def home():
    ending = db.session.scalars(services.search_campaigns(sort="ending").limit(6)).all()
    return render_template("campaigns/home.html", ending=ending)


@bp.get("/c/<slug>")
@cached_page
def detail(slug: str):
    campaign = services.campaign_for_page(slug)
    if campaign is None:
        abort(404)
    role = campaign.role_of(current_user)
    if campaign.is_draft and role is None:
        abort(404)  # drafts are private: not even their existence leaks
    if campaign.status == CampaignStatus.SUSPENDED and role is None and not _is_moderator():
        return render_template("campaigns/suspended.html", campaign=campaign), 451
    return render_template(
        "campaigns/detail.html",
        campaign=campaign,
        role=role,
        story=render_markdown(campaign.story),
        updates=[(u, render_markdown(u.body)) for u in campaign.updates],
    )


@bp.get("/c/<slug>/updates.atom")
def updates_feed(slug: str):
    campaign = services.campaign_for_page(slug)
    if campaign is None or campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SUSPENDED):
        abort(404)
    body = render_template(
        "campaigns/updates.atom.xml",
        campaign=campaign,
        updates=[(u, render_markdown(u.body)) for u in campaign.updates[:50]],
    )
    response = make_response(body)
    response.mimetype = "application/atom+xml"
    return response


@bp.get("/media/covers/<name>")
def cover(name: str):
    response = send_from_directory(covers_folder(), name, max_age=86400)
    response.headers["Content-Disposition"] = "inline"
    return response


@bp.route("/c/<slug>/report", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["REPORT_RATE_LIMIT"], methods=["POST"])
def report(slug: str):
    campaign = _public_campaign(slug)
    form = ReportForm()
    if form.validate_on_submit():
        services.report_campaign(campaign, form.reason.data)
        db.session.commit()
        flash(_("Thank you. Moderators will look at your report."), "success")
        return redirect(url_for("campaigns.detail", slug=campaign.slug))
    return render_template("campaigns/report.html", campaign=campaign, form=form), (
        422 if form.errors else 200
    )


# ---- Organizers --------------------------------------------------------------------


@bp.get("/sitemap.xml")
def sitemap():
    """Every public campaign, on PUBLIC_URL (never the request's Host)."""
    campaigns = db.session.scalars(
        services.public_campaigns().order_by(Campaign.id).limit(50_000)
    ).all()
    body = render_template("campaigns/sitemap.xml", campaigns=campaigns)
    return current_app.response_class(body, mimetype="application/xml")


@bp.get("/dashboard")
@login_required
def dashboard():
    campaigns = services.campaigns_of(current_user)
    return render_template(
        "campaigns/dashboard.html",
        campaigns=campaigns,
        items=dashboard_items.items_for(campaigns, current_user._get_current_object()),
        roles=OrganizerRole,
    )


@bp.route("/campaigns/new", methods=["GET", "POST"])
@login_required
def new():
    form = CampaignForm()
    if request.method == "GET":
        load_lists_into(form, Campaign(budget_lines=[], sources=[]))
    if form.validate_on_submit():
        draft = _draft_from(form)
        if draft is not None:
            cover_name = _store_cover(form)
            if cover_name is not False:
                with form_transaction(form) as work:
                    campaign = services.create_draft(current_user, draft)
                    campaign.cover_image = cover_name
                if not work.committed:
                    delete_cover(cover_name)
                else:
                    flash(_("Draft saved. Check it over, then launch it."), "success")
                    return redirect(url_for("campaigns.detail", slug=campaign.slug))
    return render_template("campaigns/edit.html", form=form, campaign=None), (
        422 if request.method == "POST" else 200
    )


@bp.route("/c/<slug>/edit", methods=["GET", "POST"])
@login_required
def edit(slug: str):
    campaign, _role = _organizer_campaign(slug, Permission.EDIT)
    if not (campaign.is_draft or campaign.is_live):
        flash(_("This campaign can no longer be edited."), "error")
        return redirect(url_for("campaigns.detail", slug=slug))
    form = CampaignForm(obj=campaign)
    if request.method == "GET":
        load_campaign_into(form, campaign)
        load_lists_into(form, campaign)
    elif not campaign.is_draft:
        load_campaign_into(form, campaign)  # supporters pledged to these: ignore what was sent
        form.terms_frozen = True
    if form.validate_on_submit():
        draft = _draft_from(form, frozen=not campaign.is_draft, campaign=campaign)
        if draft is not None:
            cover_name = _store_cover(form)
            if cover_name is not False:
                with form_transaction(form) as work:
                    services.update_campaign(campaign, draft)
                    old_cover = services.set_cover(campaign, cover_name) if cover_name else None
                if not work.committed:
                    delete_cover(cover_name)
                else:
                    delete_cover(old_cover)
                    flash(_("Saved."), "success")
                    return redirect(url_for("campaigns.detail", slug=campaign.slug))
    return render_template("campaigns/edit.html", form=form, campaign=campaign), (
        422 if request.method == "POST" else 200
    )


@bp.route("/c/<slug>/launch", methods=["GET", "POST"])
@login_required
def launch(slug: str):
    """GET: what launching locks, and a button; POST: launch."""
    campaign, _role = _organizer_campaign(slug, Permission.LAUNCH)
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        with flash_transaction() as work:
            services.launch(campaign)
        if work.committed:
            flash(_("Your campaign is live."), "success")
        return redirect(url_for("campaigns.detail", slug=campaign.slug))
    if not campaign.is_draft:
        return redirect(url_for("campaigns.detail", slug=campaign.slug))
    return _confirm_page(
        campaign,
        form,
        heading=_("Launch “%(title)s”?", title=campaign.title),
        facts=services.launch_terms(campaign),
        consequences=[
            _(
                "Once it is live, supporters pledge to these terms: the goal, currency, "
                "funding model, minimum number of backers, budget and deadline can no longer "
                "change. The story, sources and updates can."
            )
        ],
        button=_("Launch now"),
        action=url_for("campaigns.launch", slug=slug),
    )


@bp.route("/c/<slug>/cancel", methods=["GET", "POST"])
@login_required
def cancel(slug: str):
    """GET: what cancelling releases, and a button; POST: cancel."""
    campaign, _role = _organizer_campaign(slug, Permission.CANCEL)
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        with flash_transaction() as work:
            services.cancel(campaign)
        if work.committed:
            flash(_("The campaign is cancelled. Nobody will be charged."), "info")
        return redirect(url_for("campaigns.detail", slug=slug))
    if not (campaign.is_draft or campaign.is_live):
        return redirect(url_for("campaigns.detail", slug=slug))
    consequences = [_("The campaign ends now and takes no more pledges.")]
    if not campaign.is_draft:
        consequences.append(
            ngettext(
                "Its %(num)d pledge (%(total)s) is released: nobody is charged, and the "
                "supporter is told.",
                "All %(num)d pledges (%(total)s) are released: nobody is charged, and every "
                "supporter is told.",
                campaign.backer_count,
                total=format_money(campaign.pledged),
            )
        )
    return _confirm_page(
        campaign,
        form,
        heading=_("Cancel “%(title)s”?", title=campaign.title),
        consequences=consequences,
        button=_("Cancel the campaign"),
        action=url_for("campaigns.cancel", slug=slug),
        danger=True,
    )


def _confirm_page(campaign: Campaign, form: ConfirmForm, **page):
    return render_template(
        "core/confirm.html",
        form=form,
        back=url_for("campaigns.detail", slug=campaign.slug),
        facts=page.pop("facts", []),
        **page,
    )


@bp.route("/c/<slug>/updates/new", methods=["GET", "POST"])
@login_required
def new_update(slug: str):
    campaign, _role = _organizer_campaign(slug, Permission.POST_UPDATE)
    form = UpdateForm()
    if form.validate_on_submit():
        with form_transaction(form) as work:
            services.post_update(
                campaign,
                current_user,
                form.title.data,
                form.body.data,
                email_backers=form.email_backers.data,
            )
        if work.committed:
            flash(_("Update posted."), "success")
            return redirect(url_for("campaigns.detail", slug=slug) + "#updates")
    return render_template("campaigns/update_form.html", campaign=campaign, form=form), (
        422 if form.errors else 200
    )


@bp.route("/c/<slug>/team", methods=["GET", "POST"])
@login_required
def team(slug: str):
    campaign, role = _organizer_campaign(slug)
    form = AddOrganizerForm()
    if request.method == "POST":
        if not role_can(role, Permission.MANAGE_TEAM):
            abort(403)
        if form.validate_on_submit():
            with form_transaction(form) as work:
                services.invite(campaign, current_user, form.email.data, form.role.data)
            if work.committed:
                flash(
                    _(
                        "We have emailed an invitation to %(email)s. They join the committee "
                        "once they accept it.",
                        email=form.email.data.strip(),
                    ),
                    "success",
                )
                return redirect(url_for("campaigns.team", slug=slug))
    return render_template(
        "campaigns/team.html",
        campaign=campaign,
        form=form,
        role=role,
        confirm=ConfirmForm(),
        invitations=services.pending_invitations(campaign)
        if role_can(role, Permission.MANAGE_TEAM)
        else [],
    ), (422 if form.errors else 200)


@bp.post("/c/<slug>/team/leave")
@login_required
def leave_committee(slug: str):
    campaign, _role = _organizer_campaign(slug)
    if ConfirmForm().validate_on_submit():
        try:
            services.leave(campaign, current_user)
        except services.CampaignError as exc:
            for message in exc.errors["organizer"]:
                flash(str(message), "error")
            return redirect(url_for("campaigns.team", slug=slug))
        db.session.commit()
        flash(_("You have left the committee."), "info")
    return redirect(url_for("campaigns.detail", slug=slug))


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str):
    """An invitation link: log in (or register) with the invited address, then accept."""
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
            services.accept(invited, current_user)
        if work.committed:
            flash(_("You are on the committee now."), "success")
            return redirect(url_for("campaigns.detail", slug=invited.campaign.slug))
    return render_template(
        "campaigns/invitation.html",
        invitation=invited,
        form=form,
        role_label=ROLE_LABELS[OrganizerRole(invited.role)],
    )


@bp.post("/c/<slug>/team/<int:organizer_id>/remove")
@login_required
def remove_organizer(slug: str, organizer_id: int):
    campaign, role = _organizer_campaign(slug)
    if not role_can(role, Permission.MANAGE_TEAM):
        abort(403)
    if ConfirmForm().validate_on_submit():
        with flash_transaction() as work:
            services.remove_organizer(campaign, organizer_id)
        if work.committed:
            flash(_("Removed from the committee."), "info")
    return redirect(url_for("campaigns.team", slug=slug))


# ---- Helpers -----------------------------------------------------------------------


def _is_moderator() -> bool:
    return bool(current_user.is_authenticated and current_user.is_moderator)


def _public_campaign(slug: str) -> Campaign:
    campaign = db.session.scalar(db.select(Campaign).where(Campaign.slug == slug))
    if campaign is None or campaign.is_draft:
        abort(404)
    return campaign


def _organizer_campaign(
    slug: str, permission: Permission | None = None
) -> tuple[Campaign, OrganizerRole]:
    """The campaign if the current user organizes it (and their role has `permission`);
    404 hides drafts from outsiders, 403 otherwise."""
    campaign = services.campaign_for_page(slug)
    if campaign is None:
        abort(404)
    role = campaign.role_of(current_user)
    if role is None:
        abort(404 if campaign.is_draft else 403)
    if permission is not None and not role_can(role, permission):
        abort(403)
    return campaign, role


def _draft_from(form: CampaignForm, *, frozen: bool = False, campaign: Campaign | None = None):
    """The form's contents as a CampaignDraft, or None after marking row errors."""
    try:
        budget = [] if frozen else form.filled_budget_lines()
        sources = form.filled_sources()
    except ValidationError:
        return None
    deadline = form.deadline.data.replace(tzinfo=UTC)
    goal = form.goal_money if not (frozen and campaign) else campaign.goal
    return services.CampaignDraft(
        title=form.title.data,
        slug=(form.slug.data or "").strip().lower(),
        summary=form.summary.data,
        story=form.story.data or "",
        kind=form.kind.data,
        language=form.language.data,
        goal=goal,
        funding_model=form.funding_model.data,
        deadline=deadline,
        min_backers=form.min_backers.data,
        budget_lines=budget,
        budget_note=form.budget_note.data or "",
        sources=sources,
        recurrence=form.repeats.data or "",
        threshold_amount=getattr(form, "threshold_money", None),
        threshold_backers=form.period_threshold_backers.data,
        period_count=form.period_count.data,
    )


def _store_cover(form: CampaignForm):
    """The stored file name, None when no file was sent, False after a field error."""
    upload = form.cover.data
    if not upload or not getattr(upload, "filename", ""):
        return None
    try:
        return process_cover(upload.stream)
    except ImageError as exc:
        form.cover.errors = [*form.cover.errors, str(exc)]
        return False

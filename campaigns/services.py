"""Campaign operations. Services check the rules and flush; views commit once."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from slugify import slugify
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import selectinload

from accounts.models import User
from accounts.services import AccountError, find_user_by_email, normalise_email
from campaigns import notifications, search, signals
from campaigns.models import (
    DECIDED_STATUSES,
    ROLE_LABELS,
    BudgetLine,
    Campaign,
    CampaignKind,
    CampaignStatus,
    CampaignUpdate,
    FundingModel,
    Invitation,
    Organizer,
    OrganizerRole,
    Report,
    Source,
)
from campaigns.periods import (
    MAX_PERIODS,
    Interval,
    Recurrence,
    last_number,
    period_bounds,
    recurring_end_problem,
)
from core.clock import utcnow
from core.extensions import db
from core.i18n import format_money
from core.money import Money
from core.signed import make_token, read_token
from core.urls import public_url_for
from core.work import RuleError

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
RESERVED_SLUGS = {"new", "edit", "api", "admin", "static", "media", "feeds"}


class CampaignError(RuleError):
    """One or more rules broken; `errors` maps form field names to messages."""

    def __init__(self, errors: dict[str, list]):
        super().__init__("; ".join(str(m) for msgs in errors.values() for m in msgs))
        self.errors = errors

    def messages(self) -> list[str]:
        return [str(m) for messages in self.errors.values() for m in messages]

    def attach_to(self, form: Any, default_field: str | None = None) -> None:
        for name, messages in self.errors.items():
            field = getattr(form, name, None)
            if field is None:
                form.form_errors.extend(str(m) for m in messages)
            else:
                field.errors = [*field.errors, *(str(m) for m in messages)]


@dataclass
class CampaignDraft:
    """What an organizer submits for a campaign, already parsed."""

    title: str
    summary: str
    story: str
    kind: str
    language: str
    goal: Money
    funding_model: str
    deadline: datetime
    min_backers: int | None = None
    slug: str = ""
    budget_lines: list[tuple[str, Money, bool]] = field(default_factory=list)
    budget_note: str = ""
    sources: list[tuple[str, str]] = field(default_factory=list)
    # "week" or "month" for a recurring campaign (then `deadline` is when it stops).
    recurrence: str = ""
    threshold_amount: Money | None = None
    threshold_backers: int | None = None
    period_count: int | None = None


def _duration_bounds() -> tuple[timedelta, timedelta]:
    config = current_app.config
    return (
        timedelta(seconds=config["CAMPAIGN_MIN_DURATION"]),
        timedelta(seconds=config["CAMPAIGN_MAX_DURATION"]),
    )


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return str(_l("%(n)d days", n=days)) if days != 1 else str(_l("1 day"))
    if seconds % 3600 == 0:
        return str(_l("%(n)d hours", n=seconds // 3600))
    return str(_l("%(n)d seconds", n=seconds))


def deadline_problem(deadline: datetime, launch_at: datetime) -> str | None:
    shortest, longest = _duration_bounds()
    if deadline < launch_at + shortest or deadline > launch_at + longest:
        return str(
            _l(
                "The deadline must be between %(min)s and %(max)s after launch.",
                min=_describe(shortest),
                max=_describe(longest),
            )
        )
    return None


# Drafts are private, down to their web address: a draft lives at an unguessable
# address and takes the one its committee asked for only at launch. Otherwise picking
# an address ("taken, how about …-2?") would reveal someone else's draft.
DRAFT_SLUG_PREFIX = "draft-"


def _private_slug() -> str:
    return DRAFT_SLUG_PREFIX + secrets.token_hex(8)


def _slug_taken(slug: str) -> bool:
    return db.session.scalar(select(Campaign.id).where(Campaign.slug == slug)) is not None


def suggest_slug(base: str) -> str:
    base = slugify(base, max_length=72, word_boundary=True) or "campaign"
    taken = set(
        db.session.scalars(
            select(Campaign.slug).where(
                or_(Campaign.slug == base, Campaign.slug.startswith(base + "-"))
            )
        )
    )
    if base not in taken and base not in RESERVED_SLUGS:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _check(draft: CampaignDraft, campaign: Campaign | None) -> dict[str, list]:
    """What is wrong with a draft, by field. A launched campaign's terms (address, kind,
    model, goal, deadline, budget) are frozen: nothing of them is checked again."""
    errors: dict[str, list] = {}
    if campaign is not None and not campaign.is_draft:
        return errors
    for name, problem in (
        ("slug", _slug_problem(draft)),
        ("kind", None if draft.kind in set(CampaignKind) else _l("Choose a kind of campaign.")),
        (
            "funding_model",
            None if draft.funding_model in set(FundingModel) else _l("Choose a funding model."),
        ),
        (
            "repeats",
            None if draft.recurrence in ("", *Interval) else _l("Choose how often it repeats."),
        ),
        ("goal", _goal_problem(draft.goal)),
        ("deadline", _deadline_problem(draft)),
        ("budget_note", _budget_problem(draft)),
    ):
        if problem:
            errors.setdefault(name, []).append(problem)
    return errors


def _slug_problem(draft: CampaignDraft):
    """Checks (and fills in) the draft's web address."""
    slug = draft.slug or suggest_slug(draft.title)
    draft.slug = slug
    if not SLUG_PATTERN.match(slug or "") or len(slug) > 80:
        return _l("Use lower-case letters, digits and single hyphens.")
    if slug in RESERVED_SLUGS or slug.startswith(DRAFT_SLUG_PREFIX) or _slug_taken(slug):
        # Only launched campaigns hold real web addresses (drafts live at private
        # ones), so this answer tells nothing about anyone's drafts.
        return _l("This web address is taken. How about “%(s)s”?", s=suggest_slug(slug))
    return None


def _goal_problem(goal: Money):
    max_goal = Money.from_major(current_app.config["CAMPAIGN_MAX_GOAL"], goal.currency)
    if goal.amount <= 0:
        return _l("The goal must be more than zero.")
    if goal > max_goal:
        return _l("The goal can be at most %(max)s.", max=format_money(max_goal))
    return None


def _deadline_problem(draft: CampaignDraft):
    if draft.deadline.tzinfo is None:
        return _l("The deadline needs a time zone.")
    if draft.recurrence in set(Interval):
        return recurring_end_problem(draft.recurrence, utcnow(), draft.deadline)
    return deadline_problem(draft.deadline, utcnow())


def _budget_problem(draft: CampaignDraft):
    total = sum(amount.amount for _, amount, _ in draft.budget_lines)
    if draft.budget_lines and total != draft.goal.amount and not draft.budget_note.strip():
        return _l(
            "The budget adds up to %(total)s but the goal is %(goal)s: say why.",
            total=format_money(Money(total, draft.goal.currency)),
            goal=format_money(draft.goal),
        )
    return None


def _apply(campaign: Campaign, draft: CampaignDraft) -> None:
    campaign.title = draft.title.strip()
    campaign.summary = draft.summary.strip()
    campaign.story = draft.story or ""
    campaign.language = draft.language
    campaign.sources = [
        Source(position=i, title=title, url=url) for i, (title, url) in enumerate(draft.sources)
    ]
    if campaign.is_draft:
        campaign.requested_slug = draft.slug
        campaign.slug = campaign.slug or _private_slug()
        campaign.kind = draft.kind
        campaign.currency = draft.goal.currency
        campaign.goal_amount = draft.goal.amount
        campaign.funding_model = draft.funding_model
        campaign.min_backers = draft.min_backers
        campaign.deadline = draft.deadline
        campaign.budget_note = draft.budget_note.strip()
        campaign.budget_lines = [
            BudgetLine(position=i, label=label, amount=money.amount, required=required)
            for i, (label, money, required) in enumerate(draft.budget_lines)
        ]
        _apply_recurrence(campaign, draft)


def _apply_recurrence(campaign: Campaign, draft: CampaignDraft) -> None:
    if not draft.recurrence:
        campaign.recurrence = None
        return
    recurrence = campaign.recurrence or Recurrence(max_periods=MAX_PERIODS)
    recurrence.interval = draft.recurrence
    recurrence.ends_at = draft.deadline
    recurrence.threshold_amount = draft.threshold_amount.amount if draft.threshold_amount else None
    recurrence.threshold_backers = draft.threshold_backers
    recurrence.max_periods = draft.period_count or MAX_PERIODS
    campaign.recurrence = recurrence
    # Each period keeps what it raises once it meets its threshold.
    campaign.funding_model = FundingModel.FLEXIBLE


def create_draft(owner: User, draft: CampaignDraft) -> Campaign:
    errors = _check(draft, None)
    if errors:
        raise CampaignError(errors)
    campaign = Campaign(status=CampaignStatus.DRAFT)
    _apply(campaign, draft)
    campaign.organizers = [Organizer(user_id=owner.id, role=OrganizerRole.OWNER)]
    db.session.add(campaign)
    db.session.flush()
    return campaign


def update_campaign(campaign: Campaign, draft: CampaignDraft) -> None:
    """Drafts change freely; a live campaign keeps what its supporters pledged to."""
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.LIVE) or (
        campaign.status == CampaignStatus.LIVE and not campaign.is_live
    ):
        raise CampaignError({"title": [_l("This campaign can no longer be edited.")]})
    errors = _check(draft, campaign)
    if errors:
        raise CampaignError(errors)
    _apply(campaign, draft)
    db.session.flush()


def set_cover(campaign: Campaign, filename: str | None) -> str | None:
    """Returns the previous cover's file name so the caller can delete it after commit."""
    previous, campaign.cover_image = campaign.cover_image, filename
    db.session.flush()
    return previous


def launch_problems(campaign: Campaign) -> list[str]:
    problems = []
    if not campaign.is_draft:
        problems.append(str(_l("Only drafts can be launched.")))
        return problems
    if not campaign.story.strip():
        problems.append(str(_l("Tell the story: supporters need to know why.")))
    if not campaign.budget_lines:
        problems.append(str(_l("Add at least one budget line saying what the money is for.")))
    recurrence = campaign.recurrence
    problem = (
        recurring_end_problem(
            recurrence.interval, utcnow(), recurrence.ends_at or campaign.deadline
        )
        if recurrence
        else deadline_problem(campaign.deadline, utcnow())
    )
    if problem:
        problems.append(str(problem) + " " + str(_l("Edit the draft to move it.")))
    return problems


def launch_terms(campaign: Campaign) -> list[tuple[str, str]]:
    """What launching locks, as the confirmation page lists it."""
    from core.i18n import datetime_filter

    budget = sum(line.amount for line in campaign.budget_lines)
    return [
        (str(_l("Goal")), format_money(campaign.goal)),
        (str(_l("Funding model")), campaign.funding_label),
        (
            str(_l("Minimum number of backers")),
            str(campaign.min_backers) if campaign.min_backers else str(_l("None")),
        ),
        (str(_l("Deadline")), datetime_filter(campaign.deadline)),
        (str(_l("Budget")), format_money(Money(budget, campaign.currency))),
    ]


def launch(campaign: Campaign) -> None:
    problems = launch_problems(campaign)
    requested = campaign.requested_slug
    if requested and _slug_taken(requested):
        # Another campaign launched at that address first: it is public, so saying so
        # reveals nothing private.
        problems.append(
            str(
                _l(
                    "The web address “%(s)s” was taken by a campaign launched meanwhile: "
                    "choose another in Edit.",
                    s=requested,
                )
            )
        )
    if problems:
        raise CampaignError({"launch": problems})
    if requested:
        campaign.slug = requested
        campaign.requested_slug = None
    campaign.status = CampaignStatus.LIVE
    campaign.launched_at = utcnow()
    if campaign.recurrence is not None:
        # Pledges are taken until the last period that starts before its end is over.
        recurrence = campaign.recurrence
        last = last_number(recurrence, campaign.launched_at)
        campaign.deadline = period_bounds(campaign.launched_at, recurrence.interval, last)[1]
    db.session.flush()
    signals.campaign_launched.send(campaign)


def cancel(campaign: Campaign) -> None:
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.LIVE) or (
        campaign.status == CampaignStatus.LIVE and not campaign.is_live
    ):
        raise CampaignError({"cancel": [_l("Only drafts and live campaigns can be cancelled.")]})
    was_live = campaign.status == CampaignStatus.LIVE
    campaign.status = CampaignStatus.CANCELLED
    campaign.cancelled_at = utcnow()
    db.session.flush()
    if was_live:
        signals.campaign_cancelled.send(campaign)


def post_update(
    campaign: Campaign, author: User, title: str, body: str, *, email_backers: bool = False
) -> CampaignUpdate:
    """Publish an update; with `email_backers`, its backers are emailed it after the
    commit (payments knows who they are)."""
    if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SUSPENDED):
        raise CampaignError({"title": [_l("Updates can be posted once the campaign is launched.")]})
    update = CampaignUpdate(campaign=campaign, author_id=author.id, title=title.strip(), body=body)
    db.session.add(update)
    db.session.flush()
    signals.update_posted.send(campaign, update=update, email_backers=email_backers)
    return update


INVITATION_MAX_AGE = 14 * 24 * 3600


def invite(campaign: Campaign, inviter: User, email: str, role: str) -> None:
    """Email an invitation to join the committee. The answer is the same for every
    address (registered or not, on the committee already or not): nothing here tells
    the inviter whether an address has an account."""
    if role not in (OrganizerRole.ORGANIZER, OrganizerRole.TREASURER):
        raise CampaignError({"role": [_l("Choose organizer or treasurer.")]})
    try:
        email = normalise_email(email)
    except AccountError as exc:
        raise CampaignError({"email": [exc.message]}) from None
    member = find_user_by_email(email)
    if member is not None and campaign.role_of(member) is not None:
        return  # already there: no email, the same answer
    invitation = Invitation(campaign_id=campaign.id, email=email, role=role, invited_by=inviter.id)
    db.session.add(invitation)
    db.session.flush()
    notifications.send_invitation(
        email,
        inviter,
        campaign.title,
        str(ROLE_LABELS[OrganizerRole(role)]),
        public_url_for("campaigns.invitation", token=make_token("invite", {"i": invitation.id})),
    )


def invitation_from(token: str) -> Invitation | None:
    """The open invitation a link carries (LinkError when expired or forged)."""
    data = read_token("invite", token, INVITATION_MAX_AGE)
    invitation = db.session.get(Invitation, data.get("i"))
    if invitation is None or invitation.accepted_at is not None:
        return None
    return invitation


def accept(invitation: Invitation, user: User) -> Organizer:
    """Only the invited address may accept (a forwarded link is useless elsewhere)."""
    if user.email != invitation.email:
        raise CampaignError({"invitation": [_l("This invitation was sent to another address.")]})
    invitation.accepted_at = utcnow()
    campaign = invitation.campaign
    existing = next((o for o in campaign.organizers if o.user_id == user.id), None)
    if existing is not None:
        db.session.flush()
        return existing
    organizer = Organizer(campaign=campaign, user_id=user.id, role=invitation.role)
    db.session.add(organizer)
    db.session.flush()
    return organizer


def pending_invitations(campaign: Campaign) -> list[Invitation]:
    return list(
        db.session.scalars(
            select(Invitation)
            .where(Invitation.campaign_id == campaign.id, Invitation.accepted_at.is_(None))
            .order_by(Invitation.id)
        )
    )


def leave(campaign: Campaign, user: User) -> None:
    organizer = next((o for o in campaign.organizers if o.user_id == user.id), None)
    if organizer is None:
        raise CampaignError({"organizer": [_l("You are not on this committee.")]})
    if organizer.role == OrganizerRole.OWNER:
        raise CampaignError({"organizer": [_l("The owner cannot leave the committee they own.")]})
    campaign.organizers.remove(organizer)
    db.session.flush()


def remove_organizer(campaign: Campaign, organizer_id: int) -> None:
    organizer = next((o for o in campaign.organizers if o.id == organizer_id), None)
    if organizer is None:
        raise CampaignError({"organizer": [_l("That person is not on this committee.")]})
    if organizer.role == OrganizerRole.OWNER:
        raise CampaignError({"organizer": [_l("The owner cannot be removed.")]})
    campaign.organizers.remove(organizer)
    db.session.flush()


def report_campaign(campaign: Campaign, reason: str) -> Report:
    report = Report(campaign=campaign, reason=reason.strip())
    db.session.add(report)
    db.session.flush()
    notifications.tell_committee(campaign, "reported")
    return report


def suspend(campaign: Campaign, reason: str) -> None:
    if campaign.status == CampaignStatus.SUSPENDED:
        return
    if campaign.status == CampaignStatus.DRAFT:
        raise CampaignError({"reason": [_l("Drafts are not public; there is nothing to suspend.")]})
    if not reason.strip():
        raise CampaignError({"reason": [_l("Say why: the organizers are told.")]})
    campaign.suspended_from = campaign.status
    campaign.status = CampaignStatus.SUSPENDED
    campaign.suspended_at = utcnow()
    campaign.suspension_reason = reason.strip()
    _resolve_reports(campaign, "suspended")
    db.session.flush()
    notifications.tell_committee(campaign, "suspended", reason=campaign.suspension_reason)


def released_by_suspension(campaign: Campaign) -> bool:
    """Whether restoring this suspended campaign brings it back released: its deadline
    passed while it was suspended (the restore page says so)."""
    was = campaign.suspended_from or CampaignStatus.LIVE
    return was == CampaignStatus.RELEASED or (
        was == CampaignStatus.LIVE and campaign.deadline <= utcnow()
    )


def restore(campaign: Campaign) -> None:
    if campaign.status != CampaignStatus.SUSPENDED:
        raise CampaignError({"reason": [_l("This campaign is not suspended.")]})
    if released_by_suspension(campaign) and campaign.suspended_from != CampaignStatus.RELEASED:
        # Its deadline passed while it was suspended, before the sweep noticed: it is
        # released now, so it never comes back live past its deadline (nobody charged).
        campaign.suspended_from = CampaignStatus.RELEASED
        campaign.decided_at = utcnow()
    campaign.status = campaign.suspended_from or CampaignStatus.LIVE
    campaign.suspended_at = None
    campaign.suspension_reason = ""
    db.session.flush()


def dismiss_reports(campaign: Campaign) -> None:
    _resolve_reports(campaign, "dismissed")
    db.session.flush()


def _resolve_reports(campaign: Campaign, resolution: str) -> None:
    for report in db.session.scalars(
        select(Report).where(Report.campaign_id == campaign.id, Report.resolved_at.is_(None))
    ):
        report.resolved_at = utcnow()
        report.resolution = resolution


# ---- Finding campaigns -------------------------------------------------------------

PUBLIC_STATUSES = ("live", "ended", "cancelled", "all")
SORTS = ("relevance", "ending", "newest", "backers", "funded")
# When a campaign went public (a draft cancelled before launch: when it was created).
NEWEST_KEY = func.coalesce(Campaign.launched_at, Campaign.created_at)


def public_campaigns() -> Select:
    return select(Campaign).where(
        Campaign.status.in_(
            [CampaignStatus.LIVE, CampaignStatus.ENDED, CampaignStatus.CANCELLED, *DECIDED_STATUSES]
        )
    )


def search_campaigns(
    *, kind: str | None = None, status: str = "live", text: str = "", sort: str = "ending"
) -> Select:
    now = utcnow()
    query = public_campaigns()
    if kind:
        query = query.where(Campaign.kind == kind)
    if status == "live":
        query = query.where(Campaign.status == CampaignStatus.LIVE, Campaign.deadline > now)
    elif status == "ended":
        query = query.where(
            or_(
                and_(Campaign.status == CampaignStatus.LIVE, Campaign.deadline <= now),
                Campaign.status.in_([CampaignStatus.ENDED, *DECIDED_STATUSES]),
            )
        )
    elif status == "cancelled":
        query = query.where(Campaign.status == CampaignStatus.CANCELLED)
    found = search.matching(text)
    if found is not None:
        condition, rank = found
        query = query.where(condition)
        if sort == "relevance":
            return query.order_by(rank, Campaign.id.desc())
    order = {
        "ending": (Campaign.deadline.asc(),),
        "newest": (NEWEST_KEY.desc(),),
        "backers": (Campaign.backer_count.desc(),),
        # Integer arithmetic keeps the ratio exact enough to order by, on every backend.
        "funded": ((Campaign.pledged_amount * 10000 / Campaign.goal_amount).desc(),),
    }[sort if sort in SORTS and sort != "relevance" else "ending"]
    return query.order_by(*order, Campaign.id.desc())  # type: ignore[arg-type]


def campaign_for_page(slug: str) -> Campaign | None:
    """One campaign with everything its page shows, in a fixed number of queries."""
    return db.session.scalar(
        select(Campaign)
        .where(Campaign.slug == slug)
        .options(
            selectinload(Campaign.organizers).joinedload(Organizer.user),
            selectinload(Campaign.budget_lines),
            selectinload(Campaign.sources),
            selectinload(Campaign.updates).joinedload(CampaignUpdate.author),
        )
    )


def campaigns_of(user: User) -> list[Campaign]:
    return list(
        db.session.scalars(
            select(Campaign)
            .join(Organizer)
            .where(Organizer.user_id == user.id)
            .order_by(Campaign.created_at.desc())
        )
    )


def open_reports() -> list[Report]:
    return list(
        db.session.scalars(
            select(Report)
            .where(Report.resolved_at.is_(None))
            .options(selectinload(Report.campaign))
            .order_by(Report.created_at)
        )
    )

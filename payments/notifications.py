"""Emails to a campaign's backers that they may stop with one click (core.optouts):
the organizers' updates (when the organizers choose to email one) and a reminder a
few days before the deadline of an all-or-nothing campaign that is close to its goal.
Both are sent by jobs, each exactly once: a guarded UPDATE claims the sending in the
same transaction that queues the messages, so a job run twice sends nothing more."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from accounts.models import User
from campaigns.models import Campaign, CampaignStatus, CampaignUpdate, FundingModel
from campaigns.periods import Period, PeriodStatus
from core import mail, optouts, outbox
from core.clock import utcnow
from core.extensions import changed, db
from core.jobs import app_job, enqueue_after_commit
from core.urls import public_url_for
from payments import emails
from payments.models import Pledge, PledgeStatus
from payments.services import BACKED

UPDATES = "campaign-updates"
REMINDERS = "deadline-reminders"
# "Close to its goal": at least this share pledged, and not funded yet.
CLOSE_TO_GOAL = 0.6


def register_topics() -> None:
    optouts.register_topic(UPDATES, _l("the updates of this campaign"))
    optouts.register_topic(REMINDERS, _l("reminders before campaigns' deadlines"))


def _recipients(campaign_id: int, statuses, topic: str) -> dict[str, str]:
    """Each backer's address once (with the language they pledged in), less those who
    opted out of `topic` for this campaign or for all."""
    rows = db.session.execute(
        select(Pledge.guest_email, Pledge.user_id, Pledge.locale, Pledge.id)
        .where(Pledge.campaign_id == campaign_id, Pledge.status.in_(statuses))
        .order_by(Pledge.id)
    ).all()
    user_ids = {r.user_id for r in rows if r.user_id}
    addresses = dict(
        db.session.execute(
            select(User.id, User.email).where(User.id.in_(user_ids), User.closed_at.is_(None))
        ).all()
        if user_ids
        else []
    )
    found: dict[str, str] = {}
    for row in rows:
        address = addresses.get(row.user_id) if row.user_id else row.guest_email
        if address:
            found.setdefault(address, row.locale)
    for address in optouts.opted_out(found, topic, str(campaign_id)):
        del found[address]
    return found


def _send_to_backers(
    campaign: Campaign, recipients: dict[str, str], template: str, topic: str, **context
) -> None:
    link = public_url_for("campaigns.detail", slug=campaign.slug)
    scope = str(campaign.id)
    mail.send_many(
        [
            (address, template, locale, {"title": campaign.title, "link": link, **context})
            for address, locale in recipients.items()
        ],
        topic=topic,
        unsubscribe_urls={a: optouts.unsubscribe_url(a, topic, scope) for a in recipients},
    )


def on_update_posted(campaign: Campaign, *, update: CampaignUpdate, email_backers: bool) -> None:
    """Signal receiver: the organizers chose to email this update to the backers."""
    if email_backers:
        enqueue_after_commit(email_update, update.id)


@app_job
def email_update(update_id: int) -> int:
    """Queue the update for every backer; returns how many were queued."""
    claimed = changed(
        update(CampaignUpdate)
        .where(CampaignUpdate.id == update_id, CampaignUpdate.emailed_to_backers.is_(False))
        .values(emailed_to_backers=True)
        .execution_options(synchronize_session=False)
    )
    if not claimed:
        return 0  # sent already (a second run of this job)
    posted = db.session.get_one(CampaignUpdate, update_id)
    recipients = _recipients(posted.campaign_id, BACKED, UPDATES)
    _send_to_backers(
        posted.campaign,
        recipients,
        "campaigns/update",
        UPDATES,
        update_title=posted.title,
        update_body=posted.body,
    )
    db.session.commit()
    outbox.deliver_pending()
    return len(recipients)


def remind_before_deadline() -> int:
    """Once per campaign: when an all-or-nothing campaign is within
    DEADLINE_REMINDER_BEFORE of its deadline, has at least CLOSE_TO_GOAL of its goal
    and is not funded yet, its active backers hear how close it is (so they can pass
    it on). Returns how many campaigns were reminded about."""
    now = utcnow()
    before = timedelta(seconds=current_app.config["DEADLINE_REMINDER_BEFORE"])
    due = db.session.scalars(
        select(Campaign).where(
            Campaign.status == CampaignStatus.LIVE,
            Campaign.funding_model == FundingModel.ALL_OR_NOTHING,
            Campaign.deadline > now,
            Campaign.deadline <= now + before,
            Campaign.deadline_reminded_at.is_(None),
            Campaign.pledged_amount >= Campaign.goal_amount * CLOSE_TO_GOAL,
        )
    ).all()
    reminded = 0
    for campaign in due:
        if campaign.is_funded_now:
            continue
        claimed = changed(
            update(Campaign)
            .where(Campaign.id == campaign.id, Campaign.deadline_reminded_at.is_(None))
            .values(deadline_reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if not claimed:
            continue
        recipients = _recipients(campaign.id, (PledgeStatus.ACTIVE,), REMINDERS)
        _send_to_backers(
            campaign,
            recipients,
            "pledges/deadline_reminder",
            REMINDERS,
            pledged=campaign.pledged,
            goal=campaign.goal,
            percent=campaign.percent_funded,
            deadline=campaign.deadline,
            backers_missing=max(0, (campaign.min_backers or 0) - campaign.backer_count),
        )
        db.session.commit()
        reminded += 1
    return reminded


def notify_before_period_charges() -> int:
    """Once per period, PERIOD_NOTICE_BEFORE its end: every standing pledge's supporter
    hears the amount, the date, whether the period's threshold looks met right now,
    and how to cancel. Returns how many periods were announced."""
    now = utcnow()
    before = timedelta(seconds=current_app.config["PERIOD_NOTICE_BEFORE"])
    due = db.session.scalars(
        select(Period)
        .join(Campaign, Campaign.id == Period.campaign_id)
        .where(
            Campaign.status == CampaignStatus.LIVE,
            Period.status == PeriodStatus.OPEN,
            Period.notice_sent_at.is_(None),
            Period.ends_at > now,
            Period.ends_at <= now + before,
        )
    ).all()
    announced = 0
    for period in due:
        claimed = changed(
            update(Period)
            .where(Period.id == period.id, Period.notice_sent_at.is_(None))
            .values(notice_sent_at=now)
            .execution_options(synchronize_session=False)
        )
        if not claimed:
            continue
        campaign = period.campaign
        recurrence = campaign.recurrence
        threshold = recurrence.threshold_money(campaign.currency)
        looks_met = (threshold is None or campaign.pledged_amount >= threshold.amount) and (
            recurrence.threshold_backers is None
            or campaign.backer_count >= recurrence.threshold_backers
        )
        standing = db.session.scalars(
            select(Pledge).where(
                Pledge.campaign_id == campaign.id,
                Pledge.recurring.is_(True),
                Pledge.status == PledgeStatus.ACTIVE,
            )
        ).all()
        for pledge in standing:
            emails.period_notice(pledge, period, looks_met)
        db.session.commit()
        announced += 1
    return announced

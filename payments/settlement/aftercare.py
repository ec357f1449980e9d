"""After the first attempt: reminders while a declined card can still be fixed, the
end of the retry window, and releasing the pledges of campaigns that will not charge."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import ColumnElement, and_, or_, select, update

from campaigns.models import Campaign, CampaignStatus
from core.clock import utcnow
from core.extensions import changed, db
from payments import emails, lifecycle
from payments.backends import get_backend
from payments.backends.base import BackendError
from payments.models import Pledge, PledgeStatus

log = logging.getLogger(__name__)

RELEASE_REASONS = ("unfunded", "cancelled", "suspended")


def send_reminders(campaign_id: int) -> int:
    now = utcnow()
    interval = timedelta(seconds=current_app.config["REMINDER_INTERVAL"])
    due = db.session.scalars(
        select(Pledge).where(
            Pledge.campaign_id == campaign_id,
            Pledge.status.in_([PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION]),
            Pledge.next_reminder_at <= now,
            Pledge.retry_until > now,
        )
    ).all()
    sent = 0
    for pledge in due:
        # Guarded on the reminder time we read: two sweeps remind once.
        moved = changed(
            update(Pledge)
            .where(Pledge.id == pledge.id, Pledge.next_reminder_at == pledge.next_reminder_at)
            .values(next_reminder_at=now + interval)
            .execution_options(synchronize_session=False)
        )
        if moved:
            emails.queue_outcome(pledge, pledge.status)
            lifecycle.note(pledge.id, "reminder_sent", amount=pledge.amount)
            sent += 1
    db.session.commit()
    return sent


def drop_expired_authentications(campaign_id: int) -> int:
    """Pledges whose bank wanted the supporter, who did not come before the window
    ended: dropped, and told."""
    expired = select(Pledge.id).where(
        Pledge.campaign_id == campaign_id,
        Pledge.status == PledgeStatus.NEEDS_AUTHENTICATION,
        Pledge.retry_until <= utcnow(),
    )
    moved = lifecycle.move("dropped", db.session.scalars(expired).all())
    for pledge in db.session.scalars(select(Pledge).where(Pledge.id.in_([r.id for r in moved]))):
        emails.queue_outcome(pledge, "dropped")
    db.session.commit()
    return len(moved)


def release_suspended_at_deadline() -> list[int]:
    """A campaign still suspended at its deadline is not decided but released: nobody
    is charged, and restoring it later brings it back released (suspended_from), never
    live past its deadline. Returns the campaigns it released. Commits."""
    now = utcnow()
    released = db.session.scalars(
        update(Campaign)
        .where(
            Campaign.status == CampaignStatus.SUSPENDED,
            or_(
                Campaign.suspended_from.is_(None),
                Campaign.suspended_from == CampaignStatus.LIVE,
            ),
            Campaign.deadline <= now,
        )
        .values(suspended_from=CampaignStatus.RELEASED, decided_at=now)
        .returning(Campaign.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return list(released)


# What releasing a campaign ends: pledges not charged, standing pledges paused or not.
RELEASABLE = (PledgeStatus.ACTIVE, PledgeStatus.PAUSED, PledgeStatus.PENDING)


def with_open_pledges(*conditions: ColumnElement[bool]) -> list[int]:
    """Campaigns matching `conditions` that still hold releasable pledges."""
    return list(
        db.session.scalars(
            select(Campaign.id).where(
                *conditions,
                Campaign.id.in_(select(Pledge.campaign_id).where(Pledge.status.in_(RELEASABLE))),
            )
        )
    )


def released_with_open_pledges() -> list[int]:
    """Released campaigns (suspended at their deadline, restored or not) whose pledges
    are not all released yet (a crash half-way, or a restore before the sweep)."""
    return with_open_pledges(
        or_(
            Campaign.status == CampaignStatus.RELEASED,
            and_(
                Campaign.status == CampaignStatus.SUSPENDED,
                Campaign.suspended_from == CampaignStatus.RELEASED,
            ),
        )
    )


def release_batch(campaign_id: int, size: int, reason: str) -> int:
    """Release up to `size` open pledges: detach the card, then mark them released (an
    active pledge) or cancelled (a pending one, its card never saved). Commits."""
    if reason not in RELEASE_REASONS:
        raise ValueError(reason)
    backend = get_backend()
    pledges = db.session.scalars(
        select(Pledge)
        .where(Pledge.campaign_id == campaign_id, Pledge.status.in_(RELEASABLE))
        .order_by(Pledge.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    ).all()
    released = 0
    for pledge in pledges:
        if pledge.provider_customer_id:
            try:
                backend.release(pledge.provider_customer_id, None)
            except BackendError:
                log.warning("release of pledge %s failed; retried later", pledge.id)
                continue
        if pledge.status == PledgeStatus.PENDING:
            lifecycle.move_pledge(
                pledge,
                "cancelled_unfinished",
                values={"cancelled_at": utcnow()},
                detail=reason,
            )
        elif lifecycle.move_pledge(pledge, "released", detail=reason):
            emails.released(pledge, reason)
            released += 1
    db.session.commit()
    return released

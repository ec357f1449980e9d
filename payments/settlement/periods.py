"""Recurring campaigns, period by period (campaigns.periods has the calendar).

Each sweep `advance`s every live recurring campaign: it creates the periods that have
started, decides those that have ended and opens the charges of the ones that met
their threshold, and ends the campaign after its last period. The charges then go
through the same claim → call → record path as any pledge (their idempotency key
`pledge-<standing pledge id>-period-<n>-attempt-<k>`), and `close_charged_periods`
marks a period charged once none of its charges is open.

Exactly once per period: deciding is a guarded UPDATE (open → met/missed) and the
charges are opened in the transaction that wins it; the unique (parent_id, period)
index refuses a second charge of a standing pledge for a period whatever runs twice.
A period whose end passed more than PERIOD_DECISION_GRACE before it could be decided
(workers down for days) is missed: nobody is charged retroactively.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from campaigns.models import Campaign, CampaignStatus
from campaigns.periods import (
    Period,
    PeriodStatus,
    Recurrence,
    last_number,
    number_at,
    period_bounds,
)
from core.clock import utcnow
from core.extensions import changed, db
from payments import lifecycle
from payments.models import Pledge, PledgeStatus
from payments.settlement.deciding import OPEN_STATUSES

# Columns a period's charge copies from its standing pledge.
_COPIED = (
    "campaign_id",
    "user_id",
    "guest_email",
    "amount",
    "currency",
    "visibility",
    "public_name",
    "locale",
    "backend",
    "provider_customer_id",
    "provider_payment_method_id",
    "card_brand",
    "card_last4",
)


def live_recurring_campaign_ids() -> list[int]:
    return list(
        db.session.scalars(
            select(Campaign.id)
            .join(Recurrence, Recurrence.campaign_id == Campaign.id)
            .where(Campaign.status == CampaignStatus.LIVE)
            .order_by(Campaign.id)
        )
    )


def advance(campaign_id: int) -> None:
    """Create, decide and open what is due for this campaign. Commits."""
    now = utcnow()
    campaign = db.session.get_one(Campaign, campaign_id)
    recurrence = db.session.get_one(Recurrence, campaign_id)
    if campaign.status != CampaignStatus.LIVE or campaign.launched_at is None:
        return
    _create_started_periods(campaign, recurrence, now)
    due = db.session.scalars(
        select(Period)
        .where(
            Period.campaign_id == campaign_id,
            Period.status == PeriodStatus.OPEN,
            Period.ends_at <= now,
        )
        .order_by(Period.number)
    ).all()
    for period in due:
        decide_period(period, recurrence, now)
        db.session.commit()


def _create_started_periods(campaign: Campaign, recurrence: Recurrence, now: datetime) -> None:
    launched = campaign.launched_at
    assert launched is not None
    running = min(number_at(launched, recurrence.interval, now), last_number(recurrence, launched))
    have = set(db.session.scalars(select(Period.number).where(Period.campaign_id == campaign.id)))
    rows = []
    for number in range(1, running + 1):
        if number not in have:
            starts, ends = period_bounds(launched, recurrence.interval, number)
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "number": number,
                    "starts_at": starts,
                    "ends_at": ends,
                    "status": PeriodStatus.OPEN.value,
                    "collected_amount": 0,
                    "missed_late": False,
                }
            )
    if rows:
        # Two workers may create the same period: the second one's insert does nothing.
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        db.session.execute(
            dialect.insert(Period).on_conflict_do_nothing(index_elements=["campaign_id", "number"]),
            rows,
        )
        db.session.commit()


def _standing(campaign_id: int, ends_at: datetime):
    """The standing pledges a period counts: active, their card saved before it ended,
    and not ended by their supporter before it did."""
    return (
        Pledge.campaign_id == campaign_id,
        Pledge.recurring.is_(True),
        Pledge.status == PledgeStatus.ACTIVE,
        Pledge.activated_at < ends_at,
        or_(Pledge.recurring_until.is_(None), Pledge.recurring_until >= ends_at),
    )


def decide_period(period: Period, recurrence: Recurrence, now: datetime) -> str | None:
    """Decide an ended period, once; returns its new status (None: decided elsewhere)."""
    pledged, backers = db.session.execute(
        select(func.coalesce(func.sum(Pledge.amount), 0), func.count(Pledge.id)).where(
            *_standing(period.campaign_id, period.ends_at)
        )
    ).one()
    grace = timedelta(seconds=current_app.config["PERIOD_DECISION_GRACE"])
    late = now - period.ends_at > grace
    met = (
        not late
        and (recurrence.threshold_amount is None or pledged >= recurrence.threshold_amount)
        and (recurrence.threshold_backers is None or backers >= recurrence.threshold_backers)
    )
    status = PeriodStatus.MET if met else PeriodStatus.MISSED
    won = changed(
        update(Period)
        .where(Period.id == period.id, Period.status == PeriodStatus.OPEN)
        .values(
            status=status,
            pledged_amount=pledged,
            backer_count=backers,
            decided_at=now,
            missed_late=late,
        )
        .execution_options(synchronize_session=False)
    )
    if not won:
        return None
    if met:
        _open_charges(period, now)
        db.session.execute(
            update(Period)
            .where(Period.id == period.id, Period.status == PeriodStatus.MET)
            .values(status=PeriodStatus.CHARGING)
            .execution_options(synchronize_session=False)
        )
        return PeriodStatus.CHARGING
    return status


def _open_charges(period: Period, now: datetime) -> None:
    """One charge of each standing pledge for this period, retried within the period
    (at most RETRY_WINDOW) when declined."""
    length = period.ends_at - period.starts_at
    retry_until = now + min(timedelta(seconds=current_app.config["RETRY_WINDOW"]), length)
    standing = db.session.execute(
        select(Pledge.id, *(getattr(Pledge, name) for name in _COPIED)).where(
            *_standing(period.campaign_id, period.ends_at)
        )
    ).all()
    rows: list[dict[str, Any]] = [
        {
            **{name: getattr(row, name) for name in _COPIED},
            "public_id": secrets.token_urlsafe(16),
            "submission_key": f"period-{period.number}-of-{row.id}",
            "recurring": False,
            "parent_id": row.id,
            "period": period.number,
            "activated_at": now,
            "retry_until": retry_until,
            "charge_attempts": 0,
            "link_version": 1,
            "created_at": now,
        }
        for row in standing
    ]
    lifecycle.begin_period_charges(rows)


def close_charged_periods(campaign_id: int) -> int:
    """Charging periods none of whose charges is open any more are charged. Commits."""
    still_open = exists().where(
        Pledge.campaign_id == Period.campaign_id,
        Pledge.period == Period.number,
        Pledge.parent_id.is_not(None),
        Pledge.status.in_(OPEN_STATUSES),
    )
    closed = changed(
        update(Period)
        .where(
            Period.campaign_id == campaign_id,
            Period.status == PeriodStatus.CHARGING,
            ~still_open,
        )
        .values(status=PeriodStatus.CHARGED)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return closed


def end_if_over(campaign_id: int) -> list[tuple[str, str | None]]:
    """After the last period is decided and its charges done, the standing pledges are
    released and the campaign ends settled. Returns the (customer, card) of each
    released pledge, for the caller to detach after its commit (it commits)."""
    now = utcnow()
    campaign = db.session.get_one(Campaign, campaign_id)
    recurrence = db.session.get_one(Recurrence, campaign_id)
    launched = campaign.launched_at
    if campaign.status != CampaignStatus.LIVE or launched is None:
        return []
    last = last_number(recurrence, launched)
    _, last_end = period_bounds(launched, recurrence.interval, last) if last else (now, launched)
    unfinished = db.session.scalar(
        select(func.count(Period.id)).where(
            Period.campaign_id == campaign_id,
            Period.status.in_([PeriodStatus.OPEN, PeriodStatus.MET, PeriodStatus.CHARGING]),
        )
    )
    created = db.session.scalar(
        select(func.count(Period.id)).where(Period.campaign_id == campaign_id)
    )
    if now < last_end or unfinished or (created or 0) < last:
        return []
    ended = changed(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.LIVE)
        .values(status=CampaignStatus.SETTLED, decided_at=now, settled_at=now)
        .execution_options(synchronize_session=False)
    )
    if not ended:
        return []
    standing = select(Pledge.id).where(
        Pledge.campaign_id == campaign_id,
        Pledge.recurring.is_(True),
        Pledge.status.in_([PledgeStatus.ACTIVE, PledgeStatus.PAUSED]),
    )
    released = lifecycle.move(
        "released",
        db.session.scalars(standing).all(),
        returning=(Pledge.provider_customer_id, Pledge.provider_payment_method_id),
        detail="recurrence ended",
    )
    return [
        (row.provider_customer_id, row.provider_payment_method_id)
        for row in released
        if row.provider_customer_id
    ]


def pause_after_failed_periods(campaign_id: int) -> list[int]:
    """Standing pledges whose last RECURRING_MAX_FAILED_PERIODS period charges all went
    uncollected are paused (their card keeps failing): returns their ids, for the
    caller to tell their supporters (it commits)."""
    limit = current_app.config["RECURRING_MAX_FAILED_PERIODS"]
    standing = db.session.scalars(
        select(Pledge.id).where(
            Pledge.campaign_id == campaign_id,
            Pledge.recurring.is_(True),
            Pledge.status == PledgeStatus.ACTIVE,
        )
    ).all()
    failing = []
    for pledge_id in standing:
        last = db.session.scalars(
            select(Pledge.status)
            .where(Pledge.parent_id == pledge_id)
            .order_by(Pledge.period.desc())
            .limit(limit + 1)
        ).all()
        # The newest may still be retried; the `limit` before it all ended uncollected.
        ended = [status for status in last if status not in OPEN_STATUSES][:limit]
        if len(ended) == limit and all(status == PledgeStatus.DROPPED for status in ended):
            failing.append(pledge_id)
    paused = lifecycle.move("paused", failing, detail=f"{limit} periods in a row not collected")
    return [row.id for row in paused]

"""Recurring campaigns: a strike fund that pays out every week needs support every
week. A recurring campaign has a recurrence (weekly or monthly periods from its
launch, ending at a date, after a number of periods, or when its committee ends it,
12 months at most) and an optional per-period threshold: an amount and/or a number of
backers. Each period is decided at its end: met (every standing pledge is charged
once, for that period) or missed (nobody is charged; the pledges carry over). A period
decided too late (the workers were down for longer than the grace) is missed: nobody
is ever charged for a past period without having agreed to it then.

This module holds the models and the calendar; payments charges the periods."""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import Model, db
from core.money import Money
from core.types import UTCDateTime, enum_check

# The longest a recurring campaign may run (a committee can end it sooner), and the
# number of periods that bounds it (52 weeks fit in 12 months).
MAX_MONTHS = 12
MAX_PERIODS = 60


class Interval(enum.StrEnum):
    WEEK = "week"
    MONTH = "month"


class PeriodStatus(enum.StrEnum):
    OPEN = "open"  # running now
    MET = "met"  # decided: the threshold was met; charges are being opened
    MISSED = "missed"  # decided: below the threshold, or decided too late; nobody charged
    CHARGING = "charging"  # its standing pledges are being charged
    CHARGED = "charged"  # every charge of the period is done


PERIOD_STATUS_LABELS = {
    PeriodStatus.OPEN: _l("Running"),
    PeriodStatus.MET: _l("Threshold met"),
    PeriodStatus.CHARGING: _l("Being charged"),
    PeriodStatus.CHARGED: _l("Charged"),
    PeriodStatus.MISSED: _l("Missed: nobody charged"),
}
# "every week": how a standing pledge's terms name the interval.
EVERY = {Interval.WEEK: _l("every week"), Interval.MONTH: _l("every month")}
# "Every week": the heading of a recurring campaign's section.
EVERY_HEADING = {Interval.WEEK: _l("Every week"), Interval.MONTH: _l("Every month")}


class Recurrence(Model):
    __tablename__ = "campaign_recurrences"
    __table_args__ = (
        enum_check("interval", Interval, "interval_known"),
        CheckConstraint(
            "threshold_amount IS NULL OR threshold_amount > 0", name="threshold_amount_positive"
        ),
        CheckConstraint(
            "threshold_backers IS NULL OR threshold_backers > 0",
            name="threshold_backers_positive",
        ),
        CheckConstraint("max_periods > 0", name="max_periods_positive"),
    )

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    interval: Mapped[str] = mapped_column(String(8))
    threshold_amount: Mapped[int | None] = mapped_column(BigInteger)
    threshold_backers: Mapped[int | None] = mapped_column(Integer)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_periods: Mapped[int] = mapped_column(Integer)

    campaign: Mapped[Campaign] = relationship(back_populates="recurrence")

    @property
    def every(self) -> str:
        return str(EVERY[Interval(self.interval)])

    @property
    def every_heading(self) -> str:
        return str(EVERY_HEADING[Interval(self.interval)])

    def current(self, launched_at: datetime, now: datetime) -> tuple[int, datetime]:
        """The period running at `now` (before the launch: the first; after the last:
        the last) and when it ends."""
        last = max(last_number(self, launched_at), 1)
        number = max(1, min(number_at(launched_at, self.interval, now), last))
        return number, period_bounds(launched_at, self.interval, number)[1]

    def threshold_money(self, currency: str) -> Money | None:
        return Money(self.threshold_amount, currency) if self.threshold_amount else None


class Period(Model):
    __tablename__ = "campaign_periods"
    __table_args__ = (
        enum_check("status", PeriodStatus, "status_known"),
        CheckConstraint("number > 0", name="number_positive"),
        UniqueConstraint("campaign_id", "number", name="uq_campaign_periods_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default=PeriodStatus.OPEN)
    # Frozen when the period is decided: what was pledged for it, by how many.
    pledged_amount: Mapped[int | None] = mapped_column(BigInteger)
    backer_count: Mapped[int | None] = mapped_column(Integer)
    # What its charges brought in (equals the ledger's charges for the period).
    collected_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Missed because it was decided too late, not because it was below the threshold.
    missed_late: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The standing pledges' supporters were told of the coming charge (once).
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()

    @property
    def status_label(self) -> str:
        return str(PERIOD_STATUS_LABELS[PeriodStatus(self.status)])


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, on the month's last day when it has no such
    day (31 January + 1 month = 28 or 29 February)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_bounds(launched_at: datetime, interval: str, number: int) -> tuple[datetime, datetime]:
    """When period `number` (from 1) starts and ends: periods follow each other from the
    launch, a week or a calendar month long."""
    if number < 1:
        raise ValueError("periods are numbered from 1")
    if interval == Interval.WEEK:
        start = launched_at + timedelta(weeks=number - 1)
        return start, start + timedelta(weeks=1)
    return add_months(launched_at, number - 1), add_months(launched_at, number)


def number_at(launched_at: datetime, interval: str, moment: datetime) -> int:
    """The number of the period running at `moment` (0 before the launch)."""
    if moment < launched_at:
        return 0
    if interval == Interval.WEEK:
        return (moment - launched_at) // timedelta(weeks=1) + 1
    number = (moment.year - launched_at.year) * 12 + moment.month - launched_at.month + 1
    while number > 1 and period_bounds(launched_at, interval, number)[0] > moment:
        number -= 1
    while period_bounds(launched_at, interval, number)[1] <= moment:
        number += 1
    return number


def last_number(recurrence: Recurrence, launched_at: datetime) -> int:
    """How many periods the campaign runs: whole periods only, up to `max_periods`,
    each ending by `ends_at` and within MAX_MONTHS of the launch."""
    cap = add_months(launched_at, MAX_MONTHS)
    end = min(recurrence.ends_at, cap) if recurrence.ends_at else cap
    count = 0
    while count < recurrence.max_periods:
        _, period_end = period_bounds(launched_at, recurrence.interval, count + 1)
        if period_end > end:
            break
        count += 1
    return count


def recurring_end_problem(interval: str, launch_at: datetime, ends_at: datetime):
    """Why a recurring campaign cannot end at `ends_at`, or None: at least one whole
    period, at most MAX_MONTHS."""
    if ends_at < period_bounds(launch_at, interval, 1)[1]:
        return _l("A recurring campaign runs at least one whole period.")
    if ends_at > add_months(launch_at, MAX_MONTHS):
        return _l("A recurring campaign runs at most %(n)d months.", n=MAX_MONTHS)
    return None


@dataclass(frozen=True)
class Summary:
    """A recurring campaign as its page shows it."""

    recurrence: Recurrence
    current: int
    last: int
    current_ends_at: datetime
    periods: list[Period]


def summary(campaign: Campaign) -> Summary | None:
    recurrence = campaign.recurrence
    if recurrence is None:
        return None
    launched = campaign.launched_at or campaign.created_at
    current, current_ends_at = recurrence.current(launched, utcnow())
    periods = list(
        db.session.scalars(
            select(Period).where(Period.campaign_id == campaign.id).order_by(Period.number.desc())
        )
    )
    return Summary(recurrence, current, last_number(recurrence, launched), current_ends_at, periods)

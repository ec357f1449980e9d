"""A campaign's pledges over time as a small SVG, drawn on the server: no chart
library, no script, nothing loaded from elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select

from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from payments.models import PledgeDailyTotal

WIDTH, HEIGHT, PAD = 320, 120, 6


def daily_totals(campaign: Campaign) -> list[tuple[str, int]]:
    """(day, amount pledged that day) for pledges that still count: a row per day, kept
    by the database as pledges are written (PledgeDailyTotal)."""
    return [
        (str(day), int(amount))
        for day, amount in db.session.execute(
            select(PledgeDailyTotal.day, PledgeDailyTotal.amount)
            .where(PledgeDailyTotal.campaign_id == campaign.id, PledgeDailyTotal.amount != 0)
            .order_by(PledgeDailyTotal.day)
        )
    ]


def pledge_chart(campaign: Campaign) -> dict | None:
    """Coordinates for the campaign page's SVG (drawn by its template, autoescaped).

    Time runs from the launch to now (or the deadline), each day's pledges landing at
    the end of their day; the height is the running total against the goal, or against
    the total itself while it is under a third of the goal, so early support is
    visible (the goal line is drawn only when it fits)."""
    days = daily_totals(campaign)
    if not days or campaign.launched_at is None:
        return None
    start = campaign.launched_at
    end = max(min(utcnow(), campaign.deadline), start + timedelta(hours=1))
    total = sum(amount for _, amount in days)
    top = campaign.goal_amount if total * 3 >= campaign.goal_amount else total
    top = max(top, total, 1)

    def x_at(moment) -> float:
        share = (min(max(moment, start), end) - start) / (end - start)
        return round(PAD + (WIDTH - 2 * PAD) * share, 1)

    def y_at(amount: int) -> float:
        return round(HEIGHT - PAD - (HEIGHT - 2 * PAD) * amount / top, 1)

    points: list[tuple[float, float]] = [(PAD, HEIGHT - PAD)]
    running = 0
    for day, amount in days:
        points.append((x_at(_end_of(day)), points[-1][1]))  # flat until that day's end
        running += amount
        points.append((points[-1][0], y_at(running)))
    points.append((x_at(end), points[-1][1]))
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "points": " ".join(f"{x},{y}" for x, y in points),
        "goal_y": y_at(campaign.goal_amount) if campaign.goal_amount <= top else None,
        "total": Money(running, campaign.currency),
    }


def _end_of(day: str):
    """The last moment of a UTC day (the sum of its pledges is reached by then)."""
    return datetime.combine(_parse(day), time.max, tzinfo=UTC)


def _parse(day: str):
    from datetime import date

    return date.fromisoformat(day[:10])

"""A campaign's pledges over time as a small SVG, drawn on the server: no chart
library, no script, nothing loaded from elsewhere."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from payments.models import Pledge, PledgeStatus

WIDTH, HEIGHT, PAD = 320, 120, 6
COUNTED = (
    PledgeStatus.ACTIVE,
    PledgeStatus.CHARGING,
    PledgeStatus.CHARGED,
    PledgeStatus.FAILED,
    PledgeStatus.NEEDS_AUTHENTICATION,
)


def daily_totals(campaign: Campaign) -> list[tuple[str, int]]:
    """(day, amount pledged that day) for pledges that still count: one query."""
    day = func.date(Pledge.activated_at)
    return [
        (str(d), int(total))
        for d, total in db.session.execute(
            select(day, func.sum(Pledge.amount))
            .where(
                Pledge.campaign_id == campaign.id,
                Pledge.status.in_(COUNTED),
                Pledge.activated_at.is_not(None),
            )
            .group_by(day)
            .order_by(day)
        )
    ]


def pledge_chart(campaign: Campaign) -> dict | None:
    """Coordinates for the campaign page's SVG (drawn by its template, autoescaped)."""
    days = daily_totals(campaign)
    if not days or campaign.launched_at is None:
        return None
    start = campaign.launched_at.date()
    end = min(campaign.deadline, max(utcnow(), campaign.launched_at + timedelta(days=1))).date()
    span = max((end - start).days, 1)
    top = max(campaign.goal_amount, sum(amount for _, amount in days))

    def x_at(offset: int) -> float:
        return round(PAD + (WIDTH - 2 * PAD) * offset / span, 1)

    def y_at(amount: int) -> float:
        return round(HEIGHT - PAD - (HEIGHT - 2 * PAD) * amount / top, 1)

    points: list[tuple[float, float]] = [(PAD, HEIGHT - PAD)]
    running = 0
    for day, amount in days:
        running += amount
        points.append((x_at((max(min(_parse(day), end), start) - start).days), y_at(running)))
    points.append((x_at(min((utcnow().date() - start).days, span)), points[-1][1]))
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "points": " ".join(f"{x},{y}" for x, y in points),
        "goal_y": y_at(campaign.goal_amount),
        "total": Money(running, campaign.currency),
    }


def _parse(day: str):
    from datetime import date

    return date.fromisoformat(day[:10])

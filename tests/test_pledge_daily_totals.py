"""The chart's totals per day are kept by database triggers (issue 17: the campaign page
at a million pledges). Whatever happens to pledges — activation on several days, a
change of amount, a cancellation, settlement with charges and declines, a refund, a
write in plain SQL — the kept rows must equal the sum over the pledges themselves."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import func, select

from campaigns.models import Campaign
from core import clock
from core.extensions import db
from core.money import Money
from core.urls import public_request_context
from payments import services
from payments.models import COUNTED_STATUSES, Pledge, PledgeDailyTotal
from tests.factories import (
    DECLINE_ON_CHARGE,
    GOOD,
    add_pledges,
    make_campaign,
    past_deadline,
    run_sweep,
)


def _summed_from_pledges(app, campaign_id: int) -> dict[str, int]:
    """The definition the chart used before: every counted pledge, summed per day."""
    with app.app_context():
        day = func.date(Pledge.activated_at)
        rows = db.session.execute(
            select(day, func.sum(Pledge.amount))
            .where(
                Pledge.campaign_id == campaign_id,
                Pledge.status.in_(COUNTED_STATUSES),
                Pledge.activated_at.is_not(None),
            )
            .group_by(day)
        )
        return {str(d): int(total) for d, total in rows if total}


def _kept(app, campaign_id: int) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(
            select(PledgeDailyTotal.day, PledgeDailyTotal.amount).where(
                PledgeDailyTotal.campaign_id == campaign_id, PledgeDailyTotal.amount != 0
            )
        )
        return {str(day): amount for day, amount in rows}


def _assert_kept(app, campaign_id: int) -> dict[str, int]:
    kept = _kept(app, campaign_id)
    assert kept == _summed_from_pledges(app, campaign_id)
    return kept


def _with_pledge(app, pledge_id: int, change) -> None:
    with app.app_context():
        change(db.session.get(Pledge, pledge_id))
        db.session.commit()


def test_daily_totals_follow_every_write_to_a_pledge(app):
    cid = make_campaign(app, goal=10, days=5)
    start = clock.utcnow()
    first_day = add_pledges(app, cid, [(GOOD, 20), (GOOD, 35), (DECLINE_ON_CHARGE, 10)])
    clock.freeze(start + timedelta(days=1))
    second_day = add_pledges(app, cid, [(GOOD, 7), (GOOD, 12)])
    kept = _assert_kept(app, cid)
    assert sorted(kept.values()) == [1900, 6500]

    _with_pledge(app, first_day[0], lambda p: services.change_amount(p, Money(2600, "EUR")))
    _with_pledge(app, second_day[0], services.cancel)
    kept = _assert_kept(app, cid)
    assert sorted(kept.values()) == [1200, 7100]

    past_deadline(app, cid)
    run_sweep(app)  # charges all but the declined card, which fails and stays counted
    _assert_kept(app, cid)
    with app.app_context():
        # An operator's SQL goes through the same triggers.
        db.session.execute(
            sa.text("UPDATE pledges SET amount = amount + 100 WHERE id = :id"),
            {"id": first_day[1]},
        )
        db.session.commit()
    assert sum(_assert_kept(app, cid).values()) == 2600 + 3600 + 1000 + 1200


def test_a_pledge_that_never_activates_adds_nothing(app):
    cid = make_campaign(app)
    with app.app_context(), public_request_context():
        campaign = db.session.get(Campaign, cid)
        services.start_pledge(
            campaign,
            amount=Money(5000, "EUR"),
            submission_key="never-activated",
            guest_email="someone@example.org",
        )
        db.session.commit()
    assert _kept(app, cid) == {} == _summed_from_pledges(app, cid)

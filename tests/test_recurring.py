"""Recurring campaigns: weekly or monthly periods from the launch, each decided at its
end against its threshold, each met period charging every standing pledge exactly once
(`pledge-<id>-period-<n>-attempt-<k>`), a missed period charging nobody, a period the
workers could not decide in time never charged afterwards."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from campaigns.models import Campaign
from campaigns.periods import (
    Period,
    Recurrence,
    add_months,
    last_number,
    number_at,
    period_bounds,
)
from core import clock
from core.extensions import db
from ledger.models import LedgerTransaction
from payments.models import Pledge, PledgeEvent
from tests.factories import add_pledges, make_campaign, run_sweep

GOOD = "4242424242424242"
DECLINES = "4000000000000341"
LAUNCH = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


# ---- The calendar ------------------------------------------------------------------


def test_months_keep_their_day_or_end_on_the_last_one():
    assert add_months(LAUNCH, 1) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert add_months(LAUNCH, 2) == datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    assert add_months(datetime(2027, 12, 31, tzinfo=UTC), 2) == datetime(2028, 2, 29, tzinfo=UTC)
    assert period_bounds(LAUNCH, "month", 2) == (
        datetime(2026, 2, 28, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 12, 0, tzinfo=UTC),
    )
    assert period_bounds(LAUNCH, "week", 3) == (
        LAUNCH + timedelta(weeks=2),
        LAUNCH + timedelta(weeks=3),
    )
    with pytest.raises(ValueError):
        period_bounds(LAUNCH, "week", 0)


@given(
    interval=st.sampled_from(["week", "month"]),
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
)
def test_the_period_running_at_a_moment_contains_it(interval, offset):
    moment = LAUNCH + offset
    number = number_at(LAUNCH, interval, moment)
    start, end = period_bounds(LAUNCH, interval, number)
    assert start <= moment < end
    if number > 1:
        assert period_bounds(LAUNCH, interval, number - 1)[1] == start


def test_before_the_launch_no_period_runs():
    assert number_at(LAUNCH, "week", LAUNCH - timedelta(seconds=1)) == 0
    assert number_at(LAUNCH, "week", LAUNCH) == 1


def test_a_recurrence_ends_at_its_date_its_count_or_twelve_months():
    def count(**kw):
        return last_number(Recurrence(interval=kw.pop("interval", "week"), **kw), LAUNCH)

    assert count(max_periods=6) == 6
    assert count(max_periods=100) == 52  # whole weeks within twelve months, no more
    assert count(interval="month", max_periods=100) == 12
    assert count(max_periods=100, ends_at=LAUNCH + timedelta(weeks=3, days=6)) == 3
    assert count(max_periods=100, ends_at=LAUNCH + timedelta(weeks=3)) == 3
    assert count(max_periods=100, ends_at=LAUNCH + timedelta(weeks=1, seconds=-1)) == 0


# ---- Periods charged through settlement ------------------------------------------


def _recurring(app, *, threshold_amount=None, threshold_backers=None, periods=8) -> int:
    campaign_id = make_campaign(app, goal=10, model="flexible", days=7 * periods)
    with app.app_context():
        campaign = db.session.get_one(Campaign, campaign_id)
        db.session.add(
            Recurrence(
                campaign_id=campaign_id,
                interval="week",
                threshold_amount=threshold_amount,
                threshold_backers=threshold_backers,
                max_periods=periods,
            )
        )
        assert campaign.launched_at is not None
        campaign.deadline = period_bounds(campaign.launched_at, "week", periods)[1]
        db.session.commit()
    return campaign_id


def _standing(app, campaign_id, cards_and_amounts) -> list[int]:
    return add_pledges(app, campaign_id, cards_and_amounts, every_period=True)


def _at_week(app, campaign_id, weeks: float) -> None:
    with app.app_context():
        launched = db.session.get_one(Campaign, campaign_id).launched_at
    clock.freeze(launched + timedelta(weeks=weeks))


def _periods(app, campaign_id) -> dict[int, str]:
    with app.app_context():
        return dict(
            db.session.execute(
                select(Period.number, Period.status).where(Period.campaign_id == campaign_id)
            ).all()
        )


def _charges(app, campaign_id) -> dict[tuple[int, int], list[str]]:
    """(standing pledge, period) → the charge keys of its charged charges."""
    with app.app_context():
        rows = db.session.execute(
            select(Pledge.parent_id, Pledge.period, Pledge.charge_key).where(
                Pledge.campaign_id == campaign_id,
                Pledge.parent_id.is_not(None),
                Pledge.status == "charged",
            )
        ).all()
    found: dict[tuple[int, int], list[str]] = {}
    for parent, period, key in rows:
        found.setdefault((parent, period), []).append(key)
    return found


def _provider_charges(app, pledge_ids) -> int:
    provider = app.extensions["payment_backend"].provider
    with app.app_context():
        refs = db.session.scalars(select(Pledge.public_id).where(Pledge.id.in_(pledge_ids)))
        return sum(len(provider.charges_for(ref)) for ref in refs)


def test_six_weekly_periods_below_then_above_the_threshold(app):
    campaign_id = _recurring(app, threshold_backers=2, periods=6)
    [first] = _standing(app, campaign_id, [(GOOD, 10)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    # Week 1: one backer of the two needed. Nobody is charged; the pledge carries over.
    assert _periods(app, campaign_id) == {1: "missed", 2: "open"}
    assert _charges(app, campaign_id) == {}
    [second] = _standing(app, campaign_id, [(GOOD, 25)])
    for week in range(2, 7):
        _at_week(app, campaign_id, week + 0.01)
        run_sweep(app)
        run_sweep(app)  # a second sweep changes nothing
    periods = _periods(app, campaign_id)
    assert periods == {
        1: "missed",
        2: "charged",
        3: "charged",
        4: "charged",
        5: "charged",
        6: "charged",
    }
    charges = _charges(app, campaign_id)
    assert sorted(charges) == sorted((p, n) for p in (first, second) for n in range(2, 7))
    assert charges[(first, 3)] == [f"pledge-{first}-period-3-attempt-1"]
    # At the provider: one charge per standing pledge per met period, none for week 1.
    with app.app_context():
        charge_ids = list(
            db.session.scalars(
                select(Pledge.id).where(
                    Pledge.campaign_id == campaign_id, Pledge.parent_id.is_not(None)
                )
            )
        )
        # Per period, the collected figure equals the ledger's charges for it.
        for number in range(2, 7):
            collected = db.session.scalar(
                select(Period.collected_amount).where(
                    Period.campaign_id == campaign_id, Period.number == number
                )
            )
            memo = f"Pledge charged for period {number}"
            ledger_count = db.session.scalar(
                select(func.count(LedgerTransaction.id)).where(LedgerTransaction.memo == memo)
            )
            assert collected == 3500 and ledger_count == 2
        campaign = db.session.get_one(Campaign, campaign_id)
        assert campaign.status == "settled" and campaign.collected_amount == 5 * 3500
        standing = db.session.scalars(
            select(Pledge.status).where(Pledge.id.in_([first, second]))
        ).all()
        assert standing == ["released", "released"]
    assert _provider_charges(app, charge_ids) == 10
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["ledger", "reconcile"]).exit_code == 0


def test_a_period_the_workers_missed_is_never_charged_afterwards(app):
    campaign_id = _recurring(app, periods=8)
    [standing] = _standing(app, campaign_id, [(GOOD, 10)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    assert _charges(app, campaign_id) == {(standing, 1): [f"pledge-{standing}-period-1-attempt-1"]}
    # The workers are down for three weeks: periods 2, 3 and 4 end unseen.
    _at_week(app, campaign_id, 4.5)
    run_sweep(app)
    assert _periods(app, campaign_id) == {
        1: "charged",
        2: "missed",
        3: "missed",
        4: "missed",
        5: "open",
    }
    with app.app_context():
        late = db.session.scalars(
            select(Period.missed_late).where(Period.campaign_id == campaign_id, Period.number > 1)
        ).all()
        assert all(late[:3])
    assert sorted(_charges(app, campaign_id)) == [(standing, 1)]
    _at_week(app, campaign_id, 5.01)
    run_sweep(app)
    assert sorted(_charges(app, campaign_id)) == [(standing, 1), (standing, 5)]


def test_a_declined_period_charge_is_retried_within_its_period_only(app):
    campaign_id = _recurring(app, periods=4)
    [standing] = _standing(app, campaign_id, [(DECLINES, 10)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    with app.app_context():
        charge = db.session.scalars(select(Pledge).where(Pledge.parent_id == standing)).one()
        assert charge.status == "failed"
        assert charge.retry_until <= charge.activated_at + timedelta(weeks=1)
    _at_week(app, campaign_id, 2.02)
    run_sweep(app)
    run_sweep(app)
    with app.app_context():
        rows = db.session.execute(
            select(Pledge.period, Pledge.status).where(Pledge.parent_id == standing)
        ).all()
    # Week 1's charge was dropped at the end of its window; week 2 has its own.
    assert dict(rows) == {1: "dropped", 2: "failed"}
    assert _provider_charges(app, [standing]) == 0


def test_deciding_a_period_twice_opens_its_charges_once(app):
    from payments import settlement
    from payments.jobs import advance_recurring

    campaign_id = _recurring(app, periods=4)
    _standing(app, campaign_id, [(GOOD, 10), (GOOD, 20)])
    _at_week(app, campaign_id, 1.01)
    with app.app_context():
        settlement.advance(campaign_id)
        period = db.session.scalars(
            select(Period).where(Period.campaign_id == campaign_id, Period.number == 1)
        ).one()
        recurrence = db.session.get_one(Recurrence, campaign_id)
        # A second worker that read the period as open before the first decided it.
        assert settlement.periods.decide_period(period, recurrence, clock.utcnow()) is None
        db.session.commit()
        advance_recurring(campaign_id)
        advance_recurring(campaign_id)
        opened = db.session.scalar(
            select(func.count(PledgeEvent.id)).where(PledgeEvent.kind == "period_charge_opened")
        )
    assert opened == 2
    assert len(_charges(app, campaign_id)) == 2


def test_the_api_describes_the_recurrence_and_each_period(app):
    campaign_id = _recurring(app, threshold_amount=2000, threshold_backers=2, periods=6)
    [first, second] = _standing(app, campaign_id, [(GOOD, 10), (GOOD, 15)])
    with app.app_context():
        slug = db.session.get_one(Campaign, campaign_id).slug
    client = app.test_client()
    one_off = make_campaign(app)
    with app.app_context():
        one_off_slug = db.session.get_one(Campaign, one_off).slug
    assert client.get(f"/api/v1/campaigns/{one_off_slug}").get_json()["recurring"] is None
    assert client.get(f"/api/v1/campaigns/{one_off_slug}/periods").status_code == 404
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    _at_week(app, campaign_id, 2.01)
    run_sweep(app)
    body = client.get(f"/api/v1/campaigns/{slug}").get_json()
    recurring = body["recurring"]
    assert recurring["interval"] == "week" and recurring["current_period"] == 3
    assert recurring["threshold"] == {"amount": {"amount": 2000, "currency": "EUR"}, "backers": 2}
    assert recurring["period_ends_at"].endswith("Z") and recurring["ends_at"] is None
    periods = client.get(f"/api/v1/campaigns/{slug}/periods").get_json()["periods"]
    assert [(p["period"], p["status"]) for p in periods] == [
        (1, "charged"),
        (2, "charged"),
        (3, "open"),
    ]
    assert (
        periods[0]["pledged"] == {"amount": 2500, "currency": "EUR"} and periods[0]["backers"] == 2
    )
    # `collected` is the ledger's charges for the period, to the cent.
    with app.app_context():
        charged = db.session.scalar(
            select(func.coalesce(func.sum(Pledge.charged_amount), 0)).where(
                Pledge.parent_id.in_([first, second]), Pledge.period == 1
            )
        )
    assert periods[0]["collected"] == {"amount": charged, "currency": "EUR"} and charged == 2500


# ---- Organizers set it up --------------------------------------------------------


def _weekly_form(**overrides):
    from tests.factories import campaign_form

    ends = (clock.utcnow() + timedelta(weeks=6, hours=1)).strftime("%Y-%m-%dT%H:%M")
    fields = {
        "repeats": "week",
        "deadline": ends,
        "period_threshold_amount": "150.50",
        "period_threshold_backers": "5",
    }
    return campaign_form(**(fields | overrides))


def test_an_organizer_launches_a_weekly_strike_fund_with_a_threshold(app, client):
    from tests.factories import launched, register, submit

    register(client)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"
    # Amounts as typed in German.
    german = {
        "goal": "5000,50",
        "budget_lines-1-amount": "1000,50",
        "period_threshold_amount": "150,50",
    }
    draft = submit(client, "/campaigns/new", _weekly_form(**german))
    assert draft.status_code == 302, draft.get_data(as_text=True)[:3000]
    slug = launched(client, draft.headers["Location"].rsplit("/", 1)[-1])
    with app.app_context():
        campaign = db.session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
        recurrence = campaign.recurrence
        assert (recurrence.interval, recurrence.threshold_amount, recurrence.threshold_backers) == (
            "week",
            15050,
            5,
        )
        # Six whole weeks start before the end it was given: pledges are taken until the
        # sixth ends.
        assert campaign.deadline == campaign.launched_at + timedelta(weeks=6)
        assert campaign.funding_model == "flexible"
    body = client.get(f"/api/v1/campaigns/{slug}").get_json()
    assert body["recurring"]["current_period"] == 1
    assert body["recurring"]["threshold"]["amount"] == {"amount": 15050, "currency": "EUR"}


@pytest.mark.parametrize(
    ("ends", "problem"),
    [
        (timedelta(days=6), "at least one whole period"),
        (timedelta(days=400), "at most 12 months"),
    ],
)
def test_a_recurring_campaign_runs_one_period_to_twelve_months(app, client, ends, problem):
    from tests.factories import register, submit

    register(client)
    deadline = (clock.utcnow() + ends).strftime("%Y-%m-%dT%H:%M")
    refused = submit(client, "/campaigns/new", _weekly_form() | {"deadline": deadline})
    assert refused.status_code == 422 and problem in refused.get_data(as_text=True)
    bad = submit(client, "/campaigns/new", _weekly_form() | {"period_threshold_amount": "1.2.3"})
    assert bad.status_code == 422
    with app.app_context():
        assert db.session.scalar(select(func.count(Recurrence.campaign_id))) == 0


def test_the_campaign_page_shows_the_period_and_its_history(app):
    campaign_id = _recurring(app, threshold_backers=2, periods=6)
    _standing(app, campaign_id, [(GOOD, 10), (GOOD, 15)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    with app.app_context():
        slug = db.session.get_one(Campaign, campaign_id).slug
    page = app.test_client().get(f"/c/{slug}").get_data(as_text=True)
    assert "Every week" in page and "Period 2 of 6 ends" in page
    assert "at least 2 backers" in page
    assert "€25.00" in page  # period 1's collected, and this period's pledges
    # Each standing pledge appears once among the supporters, not once per period.
    supporters = page.split('class="supporters"')[1].split("</ul>")[0]
    assert supporters.count("<li>") == 2


# ---- Supporters pledge every period ------------------------------------------------


def test_a_supporter_pledges_every_week_only_by_ticking_it_and_sees_the_terms(app):
    from tests.factories import confirmed, pledge_form, submit

    campaign_id = _recurring(app, threshold_backers=2, periods=6)
    with app.app_context():
        slug = db.session.get_one(Campaign, campaign_id).slug
    supporter = app.test_client()
    page = supporter.get(f"/c/{slug}/pledge").get_data(as_text=True)
    assert (
        'name="every_period"' in page and "checked" not in page.split('name="every_period"')[1][:40]
    )
    base = {
        "amount": "10",
        "confirmed_amount": "",
        "card_number": GOOD,
        "email": "weekly@example.org",
        "visibility": "anonymous",
        **pledge_form(supporter, slug),
    }
    unticked = submit(supporter, f"/c/{slug}/pledge", base)
    assert unticked.status_code == 422 and "Tick the box" in unticked.get_data(as_text=True)
    ticked = submit(supporter, f"/c/{slug}/pledge", base | {"every_period": "y"})
    text = ticked.get_data(as_text=True)
    assert (
        ticked.status_code == 200 and "€10.00 every week" in text and "first charge is on" in text
    )
    done = submit(
        supporter,
        f"/c/{slug}/pledge",
        base | {"every_period": "y", "confirmed_amount": confirmed("10")},
    )
    assert done.status_code == 302, done.get_data(as_text=True)[:2000]
    with app.app_context():
        standing = db.session.scalars(select(Pledge).where(Pledge.campaign_id == campaign_id)).one()
        assert standing.recurring and standing.status == "active"


def test_a_standing_pledges_page_and_email_say_every_week_and_list_its_charges(app):
    from tests.factories import link_in, mail_to

    campaign_id = _recurring(app, periods=6)
    _standing(app, campaign_id, [(GOOD, 12)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    with app.app_context():
        db.session.execute(update(Pledge).values(locale="en"))
        db.session.commit()
    mails = mail_to(app, "supporter0@example.org")
    manage = link_in(mails[0], "/pledge/")
    page = app.test_client().get(manage).get_data(as_text=True)
    assert "You pledged this amount every week" in page
    assert page.count('data-label="Period"') == 1 and "Charged" in page


def test_supporters_hear_of_a_periods_charge_a_few_days_before_once(app):
    from tests.factories import mail_to

    campaign_id = _recurring(app, threshold_backers=3, periods=6)
    _standing(app, campaign_id, [(GOOD, 12), (GOOD, 8)])
    _at_week(app, campaign_id, 0.5)
    run_sweep(app)  # three and a half days before the end: too early
    assert [m for m in mail_to(app, "supporter0@example.org") if "may be charged" in m] == []
    _at_week(app, campaign_id, 0.8)  # about a day and a half before
    run_sweep(app)
    run_sweep(app)
    [notice] = [m for m in mail_to(app, "supporter0@example.org") if "may be charged" in m]
    assert "€12.00" in notice and "does not look met" in notice
    # Pause in one click from the email (its link shows one button; the button pauses).
    pause = re.search(r"To pause it: https?://[^/\s]+(\S+)", notice).group(1)
    supporter = app.test_client()
    page = supporter.get(pause)
    assert page.status_code == 200 and "Pause my pledge" in page.get_data(as_text=True)
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)
    )
    assert supporter.post(pause, data={"csrf_token": token.group(1)}).status_code == 302
    with app.app_context():
        assert (
            db.session.scalars(
                select(Pledge.status).where(Pledge.guest_email == "supporter0@example.org")
            ).one()
            == "paused"
        )
    assert re.search(r"To cancel it: https?://\S+/cancel", notice)
    assert len([m for m in mail_to(app, "supporter1@example.org") if "may be charged" in m]) == 1


def test_pause_resume_change_and_cancel_between_periods(app):
    """Each change counts from the next period decided: paused → not charged, resumed →
    charged again, a new amount → charged that, cancelled → never again."""
    from tests.factories import csrf_token, link_in, mail_to

    campaign_id = _recurring(app, periods=6)
    [standing, other] = _standing(app, campaign_id, [(GOOD, 10), (GOOD, 5)])
    run_sweep(app)  # sends the waiting mail: the pledges' confirmations
    supporter = app.test_client()
    manage = link_in(mail_to(app, "supporter0@example.org")[0], "/pledge/")

    def post(action, **data):
        token = csrf_token(supporter, manage)
        return supporter.post(f"{manage}/{action}", data={"csrf_token": token, **data})

    def charged_in(period):
        with app.app_context():
            return dict(
                db.session.execute(
                    select(Pledge.parent_id, Pledge.charged_amount).where(
                        Pledge.period == period, Pledge.status == "charged"
                    )
                ).all()
            )

    def totals():
        with app.app_context():
            campaign = db.session.get_one(Campaign, campaign_id)
            return campaign.pledged_amount, campaign.backer_count

    assert post("pause").status_code == 302
    assert totals() == (500, 1)
    assert "Resume my pledge" in supporter.get(manage).get_data(as_text=True)
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    assert charged_in(1) == {other: 500}
    assert post("resume").status_code == 302
    assert totals() == (1500, 2)
    changed = post("amount", amount="12", confirmed_amount="1200")
    assert changed.status_code == 302, changed.get_data(as_text=True)[:2000]
    _at_week(app, campaign_id, 2.01)
    run_sweep(app)
    assert charged_in(2) == {standing: 1200, other: 500}
    token = csrf_token(supporter, manage + "/cancel")
    assert supporter.post(manage + "/cancel", data={"csrf_token": token}).status_code == 302
    _at_week(app, campaign_id, 3.01)
    run_sweep(app)
    assert charged_in(3) == {other: 500}
    assert totals() == (500, 1)
    # A paused pledge cannot be paused by a stale tab again, nor a one-off one at all.
    with app.app_context():
        assert db.session.get_one(Pledge, standing).status == "cancelled"


def test_a_card_failing_period_after_period_pauses_the_pledge_and_says_so(make_app):
    from tests.factories import mail_to

    app = make_app(RECURRING_MAX_FAILED_PERIODS=2)
    campaign_id = _recurring(app, periods=6)
    [standing, healthy] = _standing(app, campaign_id, [(DECLINES, 10), (GOOD, 5)])
    for week in (1.01, 2.01, 3.01):
        _at_week(app, campaign_id, week)
        run_sweep(app)
    with app.app_context():
        charges = dict(
            db.session.execute(
                select(Pledge.period, Pledge.status).where(Pledge.parent_id == standing)
            ).all()
        )
        assert charges[1] == charges[2] == "dropped"
        assert db.session.get_one(Pledge, standing).status == "paused"
        assert db.session.get_one(Pledge, healthy).status == "active"
        campaign = db.session.get_one(Campaign, campaign_id)
        assert (campaign.pledged_amount, campaign.backer_count) == (500, 1)
    [told] = [m for m in mail_to(app, "supporter0@example.org") if "is paused" in m]
    assert "2 periods in a row" in told and "/pledge/" in told
    _at_week(app, campaign_id, 4.01)
    run_sweep(app)
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count(Pledge.id)).where(
                    Pledge.parent_id == standing, Pledge.period == 4
                )
            )
            == 0
        )


def test_a_supporters_own_end_stops_their_charges_after_it(app):
    from tests.factories import confirmed, pledge_form, submit

    campaign_id = _recurring(app, periods=6)
    with app.app_context():
        campaign = db.session.get_one(Campaign, campaign_id)
        slug, launched = campaign.slug, campaign.launched_at
    supporter = app.test_client()
    until = (launched + timedelta(weeks=2)).date().isoformat()  # the day week 2 ends
    base = {
        "amount": "10",
        "card_number": GOOD,
        "email": "until@example.org",
        "visibility": "anonymous",
        "every_period": "y",
        "until": until,
        **pledge_form(supporter, slug),
    }
    shown = submit(supporter, f"/c/{slug}/pledge", base | {"confirmed_amount": ""})
    assert until in shown.get_data(as_text=True)
    past = submit(supporter, f"/c/{slug}/pledge", base | {"until": "2020-01-01"})
    assert past.status_code == 422 and "after today" in past.get_data(as_text=True)
    done = submit(supporter, f"/c/{slug}/pledge", base | {"confirmed_amount": confirmed("10")})
    assert done.status_code == 302
    for week in (1.01, 2.01, 3.01):
        _at_week(app, campaign_id, week)
        run_sweep(app)
    with app.app_context():
        periods = db.session.scalars(
            select(Pledge.period).where(
                Pledge.campaign_id == campaign_id, Pledge.parent_id.is_not(None)
            )
        ).all()
    assert sorted(periods) == [1, 2]


def test_the_last_day_of_a_met_period_keeps_it_met(app):
    """As before a one-off deadline: in the last day of a period that meets its
    threshold, a supporter cannot take it below; earlier, or when it stays met, they can."""
    from payments import services

    campaign_id = _recurring(app, threshold_backers=2, periods=6)
    [first, second, third] = _standing(app, campaign_id, [(GOOD, 10), (GOOD, 5), (GOOD, 5)])

    def act(action, pledge_id):
        with app.app_context():
            pledge = db.session.get_one(Pledge, pledge_id)
            try:
                action(pledge)
            except services.PledgeError as exc:
                db.session.rollback()
                return str(exc.message)
            db.session.commit()
            return "done"

    _at_week(app, campaign_id, 0.5)
    assert act(services.pause, third) == "done"  # three days before the end: free
    _at_week(app, campaign_id, 0.9)  # seventeen hours before: two backers, both needed
    refused = act(services.cancel, first)
    assert "last day of a period" in refused
    assert "last day of a period" in act(services.pause, second)
    assert act(services.resume, third) == "done"  # joining is always fine
    assert act(services.pause, second) == "done"  # now it stays met
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    assert sorted(_charges(app, campaign_id)) == [(first, 1), (third, 1)]


def test_a_new_card_on_a_standing_pledge_reaches_its_declined_period_charge(app):
    from payments.backends import get_backend
    from payments.cards import apply_saved_card
    from payments.services import start_card_setup

    campaign_id = _recurring(app, periods=6)
    [standing] = _standing(app, campaign_id, [(DECLINES, 10)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    with app.app_context():
        pledge = db.session.get_one(Pledge, standing)
        setup = start_card_setup(pledge)
        saved = get_backend().provider.confirm_setup(setup.setup_id, GOOD)
        assert apply_saved_card(pledge, saved) == "card_replaced"
        db.session.commit()
    run_sweep(app)
    with app.app_context():
        charge = db.session.scalars(select(Pledge).where(Pledge.parent_id == standing)).one()
        assert (charge.period, charge.status, charge.charged_amount) == (1, "charged", 1000)


def test_a_committee_ending_its_recurring_campaign_releases_every_standing_pledge(app):
    from campaigns import services as campaign_services

    campaign_id = _recurring(app, periods=6)
    [running, paused] = _standing(app, campaign_id, [(GOOD, 10), (GOOD, 5)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    with app.app_context():
        from payments import services

        services.pause(db.session.get_one(Pledge, paused))
        campaign_services.cancel(db.session.get_one(Campaign, campaign_id))
        db.session.commit()
    run_sweep(app)
    with app.app_context():
        states = db.session.scalars(
            select(Pledge.status).where(Pledge.id.in_([running, paused])).order_by(Pledge.id)
        ).all()
    assert states == ["released", "released"]
    # What week 1 charged stays charged, on the ledger.
    assert sorted(_charges(app, campaign_id)) == [(running, 1), (paused, 1)]


def test_the_campaign_ledger_groups_a_recurring_campaign_by_period(app):
    campaign_id = _recurring(app, threshold_backers=2, periods=6)
    _standing(app, campaign_id, [(GOOD, 10), (GOOD, 15)])
    for week in (1.01, 2.01):
        _at_week(app, campaign_id, week)
        run_sweep(app)
    with app.app_context():
        slug = db.session.get_one(Campaign, campaign_id).slug
    page = app.test_client().get(f"/c/{slug}/ledger").get_data(as_text=True)
    by_period = page.split("By period")[1].split("</table>")[0]
    assert by_period.count("Charged") == 2 and by_period.count("€25.00") == 2
    export = app.test_client().get(f"/c/{slug}/ledger/export.csv").get_data(as_text=True)
    # One row per posting: two charges of two postings each, per period.
    assert export.count("Pledge charged for period 1") == 4
    assert export.count("Pledge charged for period 2") == 4


def test_a_periods_fees_and_refunds_name_the_period_on_the_ledger(app):
    from payments.refunds import refund

    campaign_id = _recurring(app, periods=6)
    [standing, _other] = _standing(app, campaign_id, [(GOOD, 10), (GOOD, 20)])
    _at_week(app, campaign_id, 1.01)
    run_sweep(app)
    with app.app_context():
        charge = db.session.scalars(select(Pledge).where(Pledge.parent_id == standing)).one()
        refund(charge, "Paid twice")
        memos = set(
            db.session.scalars(
                select(LedgerTransaction.memo).where(LedgerTransaction.campaign_id == campaign_id)
            )
        )
        collected = db.session.scalar(
            select(Period.collected_amount).where(
                Period.campaign_id == campaign_id, Period.number == 1
            )
        )
    assert memos == {
        "Pledge charged for period 1",
        "Card processing fee, period 1",
        "Paid twice (period 1)",
    }
    assert collected == 2000  # one refunded: the period's total follows the ledger


def test_an_organizer_can_stop_it_after_a_number_of_periods(app, client):
    from tests.factories import launched, register, submit

    register(client)
    ends = (clock.utcnow() + timedelta(weeks=20)).strftime("%Y-%m-%dT%H:%M")
    draft = submit(client, "/campaigns/new", _weekly_form(deadline=ends, period_count="4"))
    assert draft.status_code == 302, draft.get_data(as_text=True)[:2000]
    slug = launched(client, draft.headers["Location"].rsplit("/", 1)[-1])
    with app.app_context():
        campaign = db.session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
        assert campaign.recurrence.max_periods == 4
        assert campaign.deadline == campaign.launched_at + timedelta(weeks=4)

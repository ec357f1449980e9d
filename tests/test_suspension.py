"""While a campaign is suspended its supporters can cancel; still suspended at its
deadline, it is released (nobody charged) and stays so when restored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from campaigns import services as campaigns
from campaigns.models import Campaign
from core import clock
from core.extensions import db
from core.urls import public_request_context
from payments import services
from payments.models import Pledge
from tests.factories import (
    GOOD,
    add_pledges,
    make_campaign,
    past_deadline,
    pledge_states,
    provider_charges,
    run_sweep,
)
from tests.test_stale_actions import StaleTab


def _suspend(app, cid):
    with app.app_context():
        campaigns.suspend(db.session.get(Campaign, cid), "reported: checking")
        db.session.commit()


def _restore(app, cid):
    with app.app_context():
        campaigns.restore(db.session.get(Campaign, cid))
        db.session.commit()


def _campaign(app, cid) -> Campaign:
    with app.app_context():
        return db.session.get(Campaign, cid)


def test_supporters_can_cancel_while_suspended(app):
    cid = make_campaign(app, goal=10)
    first, second = add_pledges(app, cid, [(GOOD, 20), (GOOD, 30)])
    tab = StaleTab(app, first)
    _suspend(app, cid)
    page = tab.client.get(tab.path).get_data(as_text=True)
    assert "Cancel my pledge" in page and "suspended" in page
    response = tab.post("cancel")
    assert "Your pledge is cancelled" in response.get_data(as_text=True)
    assert pledge_states(app, cid)[first] == "cancelled"
    campaign = _campaign(app, cid)
    assert (campaign.pledged_amount, campaign.backer_count) == (3000, 1)
    # Raising a pledge on a suspended campaign is still refused.
    with app.app_context(), public_request_context():
        pledge = db.session.get(Pledge, second)
        try:
            services.change_amount(pledge, pledge.money + pledge.money)
        except services.PledgeError:
            db.session.rollback()
        else:
            raise AssertionError("a suspended campaign took a larger pledge")


def test_still_suspended_at_the_deadline_means_released_and_restore_keeps_it(app):
    cid = make_campaign(app, goal=10)
    ids = add_pledges(app, cid, [(GOOD, 20), (GOOD, 30)])
    _suspend(app, cid)
    past_deadline(app, cid)
    run_sweep(app)
    assert set(pledge_states(app, cid).values()) == {"released"}
    assert _campaign(app, cid).status == "suspended"
    _restore(app, cid)
    assert _campaign(app, cid).status == "released"
    clock.freeze(clock.utcnow() + timedelta(hours=1))
    run_sweep(app)
    run_sweep(app)
    assert provider_charges(app, ids) == dict.fromkeys(ids, 0)
    assert set(pledge_states(app, cid).values()) == {"released"}


def test_restored_after_the_deadline_before_any_sweep_charges_nobody(app):
    """The race of the report: the moderator restores after the deadline, before the
    sweep saw the suspension."""
    cid = make_campaign(app, goal=10)
    ids = add_pledges(app, cid, [(GOOD, 20)])
    _suspend(app, cid)
    past_deadline(app, cid)
    with app.app_context():
        assert campaigns.released_by_suspension(db.session.get(Campaign, cid))
    _restore(app, cid)
    assert _campaign(app, cid).status == "released"
    run_sweep(app)
    assert provider_charges(app, ids) == {ids[0]: 0}
    assert pledge_states(app, cid) == {ids[0]: "released"}


def test_the_restore_page_says_a_released_campaign_stays_released(app):
    from tests.factories import register

    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, [(GOOD, 20)])
    _suspend(app, cid)
    past_deadline(app, cid)
    moderator = app.test_client()
    register(moderator, email="mod@example.org", name="Mod")
    with app.app_context():
        from accounts.models import User

        user = db.session.scalar(select(User).where(User.email == "mod@example.org"))
        user.is_moderator = True
        db.session.commit()
    page = moderator.get("/moderation/").get_data(as_text=True)
    assert "nobody is charged" in page

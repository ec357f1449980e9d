"""A supporter's page left open across the deadline: its cancel, amount and card forms
submitted late must never touch a pledge that settlement has, and a charge that
reached the provider always reaches the ledger (issue: settlement under faults)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text, update

from core.extensions import db
from core.urls import public_request_context
from ledger.models import EntryKind
from payments import services, settlement
from payments.backends import get_backend
from payments.models import Pledge, PledgeEvent
from payments.reconcile import reconcile
from payments.refunds import refund
from tests.factories import (
    CSRF_PATTERN,
    DECLINE_ON_CHARGE,
    GOOD,
    NEEDS_AUTH,
    add_pledges,
    ledger_count,
    make_campaign,
    past_deadline,
    provider_charges,
    run_sweep,
)


class StaleTab:
    """A manage page opened while the campaign was live and submitted much later."""

    def __init__(self, app, pledge_id):
        self.client = app.test_client()
        with app.app_context(), public_request_context():
            self.path = services.manage_url(db.session.get(Pledge, pledge_id))
        page = self.client.get(self.path).get_data(as_text=True)
        assert "Cancel my pledge" in page
        self.token = CSRF_PATTERN.search(page).group(1)

    def post(self, action, **data):
        return self.client.post(
            f"{self.path}/{action}", data={"csrf_token": self.token, **data}, follow_redirects=True
        )


def _pledge(app, pid) -> Pledge:
    with app.app_context():
        return db.session.get(Pledge, pid)


def _into_charging(app, campaign_id):
    past_deadline(app, campaign_id)
    with app.app_context():
        settlement.decide(campaign_id)
        db.session.commit()
        settlement.start_settling(campaign_id)
        db.session.commit()
        return settlement.claim_batch(campaign_id, 100)


def _setup(app, state):
    """A campaign with one pledge brought to `state`, and a tab opened while live."""
    card = {"failed": DECLINE_ON_CHARGE, "needs_authentication": NEEDS_AUTH}.get(state, GOOD)
    goal = 1000 if state == "released" else 10
    cid = make_campaign(app, goal=goal)
    # A refund leaves the processor's fee with the campaign: another backer covers it.
    others = [(GOOD, 100)] if state == "refunded" else []
    [pid, *_] = add_pledges(app, cid, [(card, 25), *others])
    tab = StaleTab(app, pid)
    if state == "charging":
        _into_charging(app, cid)
    else:
        past_deadline(app, cid)
        run_sweep(app)
    if state == "refunded":
        with app.app_context():
            refund(db.session.get(Pledge, pid), "test")
    assert _pledge(app, pid).status == state
    return cid, pid, tab


STATES = ["charging", "charged", "failed", "needs_authentication", "released", "refunded"]


@pytest.mark.parametrize("state", STATES)
def test_a_stale_cancel_never_cancels_a_pledge_settlement_has(app, state):
    _cid, pid, tab = _setup(app, state)
    before = _pledge(app, pid)
    response = tab.post("cancel")
    page = response.get_data(as_text=True)
    after = _pledge(app, pid)
    assert after.status == state
    assert after.cancelled_at is None
    assert "Your pledge is cancelled" not in page
    expected = {
        "charging": "being charged now",
        "charged": "was charged on",
        "failed": "can no longer be changed or cancelled",
        "needs_authentication": "can no longer be changed or cancelled",
        "released": "was released",
        "refunded": "refunded",
    }[state]
    assert expected in page
    # The card was not detached at the provider (a retry or a receipt still needs it).
    if state in ("charging", "failed", "needs_authentication"):
        provider = get_backend_for(app).provider
        assert not provider.is_detached(before.provider_payment_method_id)
    with app.app_context():
        kinds = db.session.scalars(
            select(PledgeEvent.kind).where(PledgeEvent.pledge_id == pid)
        ).all()
    assert "cancelled" not in kinds


def get_backend_for(app):
    return app.extensions["payment_backend"]


@pytest.mark.parametrize("state", STATES)
def test_a_stale_amount_change_never_touches_a_pledge_settlement_has(app, state):
    _cid, pid, tab = _setup(app, state)
    before = _pledge(app, pid)
    response = tab.post("amount", amount="99", confirmed_amount="9900")
    assert _pledge(app, pid).amount == before.amount
    assert "Your pledge is now" not in response.get_data(as_text=True)
    with app.app_context():
        kinds = db.session.scalars(
            select(PledgeEvent.kind).where(PledgeEvent.pledge_id == pid)
        ).all()
    assert "amount_changed" not in kinds


@pytest.mark.parametrize("state", ["charging", "charged", "released", "refunded"])
def test_a_stale_card_replacement_is_refused_once_the_card_is_no_longer_needed(app, state):
    _cid, pid, tab = _setup(app, state)
    before = _pledge(app, pid)
    # The card form through the page, and the path the Stripe return page and webhook
    # share (services.card_replaced), both refuse.
    response = tab.post("card", card_number=GOOD)
    assert "no longer needs a card" in response.get_data(as_text=True)
    with app.app_context(), public_request_context():
        pledge = db.session.get(Pledge, pid)
        session = get_backend().start_setup(pledge.public_id, pledge.provider_customer_id)
        saved = get_backend().provider.confirm_setup(session.setup_id, GOOD)
        with pytest.raises(services.PledgeError):
            services.card_replaced(pledge, saved)
        db.session.rollback()
    assert _pledge(app, pid).provider_payment_method_id == before.provider_payment_method_id


@pytest.mark.parametrize("state", ["failed", "needs_authentication"])
def test_a_declined_pledge_may_still_get_a_new_card(app, state):
    _cid, pid, tab = _setup(app, state)
    before = _pledge(app, pid)
    assert tab.client.get(f"{tab.path}/card").status_code == 200  # starts a card setup
    response = tab.post("card", card_number=GOOD)
    assert response.status_code == 200
    assert _pledge(app, pid).provider_payment_method_id != before.provider_payment_method_id


def test_a_cancel_between_the_provider_call_and_the_recording_is_refused(app):
    """The race of the chaos run: the charge is in flight when the stale cancel comes."""
    cid = make_campaign(app, goal=10)
    [pid] = add_pledges(app, cid, [(GOOD, 47)])
    tab = StaleTab(app, pid)
    [claim] = _into_charging(app, cid)
    with app.app_context():
        result = settlement.call_provider(get_backend(), settlement.RateLimiter(100), claim)
    assert result.status == "succeeded"
    assert "being charged now" in tab.post("cancel").get_data(as_text=True)
    with app.app_context(), public_request_context():
        assert settlement.record_result(claim, result) == "charged"
    pledge = _pledge(app, pid)
    assert pledge.status == "charged"
    assert provider_charges(app, [pid]) == {pid: 1}
    assert ledger_count(app, EntryKind.PLEDGE_CHARGE) == 1
    with app.app_context():
        report = reconcile()
        assert report.difference_list == []


def test_a_charge_whose_pledge_left_charging_is_recorded_then_refunded(app):
    """Should anything move a pledge out of `charging` while its charge is in flight
    (a bug, an operator's hand), the money still reaches the ledger and the pledge, is
    refunded at once, and the supporter and operators are told; reconciliation finds
    no difference."""
    cid = make_campaign(app, goal=10)
    [pid] = add_pledges(app, cid, [(GOOD, 47)])
    [claim] = _into_charging(app, cid)
    with app.app_context():
        result = settlement.call_provider(get_backend(), settlement.RateLimiter(100), claim)
        db.session.execute(update(Pledge).where(Pledge.id == pid).values(status="cancelled"))
        db.session.commit()
    with app.app_context(), public_request_context():
        assert settlement.record_result(claim, result) == "followed"
        # A duplicate recording (RQ ran the job twice) changes nothing more.
        assert settlement.record_result(claim, result) == "already_recorded"
    pledge = _pledge(app, pid)
    assert pledge.status == "refunded"
    assert pledge.provider_charge_id == result.charge_id
    assert ledger_count(app, EntryKind.PLEDGE_CHARGE) == 1
    assert ledger_count(app, EntryKind.REFUND) == 1
    with app.app_context():
        assert reconcile().difference_list == []
        alerts = db.session.execute(text("SELECT error FROM job_failures")).scalars().all()
        assert any("refunded" in alert for alert in alerts)
        mail = db.session.execute(
            text("SELECT topic FROM outbox_messages WHERE topic = 'pledge-refunded'")
        ).all()
        assert len(mail) == 1


def test_grouped_recording_follows_a_lost_charge_too(app):
    cid = make_campaign(app, goal=10)
    ids = add_pledges(app, cid, [(GOOD, 10), (GOOD, 20), (GOOD, 30)])
    claims = _into_charging(app, cid)
    with app.app_context():
        backend, limiter = get_backend(), settlement.RateLimiter(100)
        pairs = [(c, settlement.call_provider(backend, limiter, c)) for c in claims]
        db.session.execute(update(Pledge).where(Pledge.id == ids[1]).values(status="cancelled"))
        db.session.commit()
    with app.app_context(), public_request_context():
        assert settlement.record_charges(pairs) == 2
    states = {pid: _pledge(app, pid).status for pid in ids}
    assert states == {ids[0]: "charged", ids[1]: "refunded", ids[2]: "charged"}
    with app.app_context():
        assert reconcile().difference_list == []


def test_manage_page_of_a_charged_pledge_offers_no_cancel(app):
    _cid, _pid, tab = _setup(app, "charged")
    page = tab.client.get(tab.path).get_data(as_text=True)
    assert "Cancel my pledge" not in page
    assert re.search(r"Receipt", page)


def test_asking_for_new_links_revokes_the_old_ones(app):
    from tests.factories import submit

    cid = make_campaign(app, goal=10)
    [pid] = add_pledges(app, cid, [(GOOD, 20)])
    old = StaleTab(app, pid)
    assert old.client.get(old.path).status_code == 200
    response = submit(app.test_client(), "/pledges/links", {"email": "supporter0@example.org"})
    assert response.status_code == 302
    assert old.client.get(old.path).status_code == 404
    fresh = StaleTab(app, pid)  # the link from the new email
    assert fresh.client.get(fresh.path).status_code == 200

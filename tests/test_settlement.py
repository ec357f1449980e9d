from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.models import Campaign
from core import clock
from core.extensions import db
from core.urls import public_request_context
from payments import settlement
from payments.models import Pledge
from tests.factories import (
    DECLINE_ON_CHARGE,
    GOOD,
    NEEDS_AUTH,
    NO_FUNDS,
    add_pledges,
    campaign,
    ledger_balance,
    ledger_count,
    make_campaign,
    past_deadline,
    pledge_states,
    provider_charges,
    run_sweep,
    submit,
)


def _mail(app, topic_text) -> list[str]:
    folder = Path(app.config["OUTBOX_FOLDER"])
    return [p.read_text() for p in sorted(folder.glob("*.eml")) if topic_text in p.read_text()]


def test_funded_campaign_charges_every_pledge_once_and_writes_the_ledger(app):
    cid = make_campaign(app, goal=100)
    ids = add_pledges(app, cid, [(GOOD, 50), (GOOD, 40), (GOOD, 30)])
    past_deadline(app, cid)
    run_sweep(app)
    run_sweep(app)  # deciding and settling again changes nothing
    c = campaign(app, cid)
    assert c.status == "settled"
    assert (c.final_pledged_amount, c.final_backer_count) == (12000, 3)
    assert c.collected_amount == 12000
    assert set(pledge_states(app, cid).values()) == {"charged"}
    assert provider_charges(app, ids) == dict.fromkeys(ids, 1)
    fees = sum(a * 150 // 10_000 + 25 for a in (5000, 4000, 3000))
    assert ledger_balance(app, f"campaign:{cid}") == 12000 - fees
    assert ledger_balance(app, "supporters") == -12000
    assert ledger_balance(app, "processor:fees") == fees
    assert ledger_count(app, "pledge_charge") == 3 and ledger_count(app, "processor_fee") == 3
    assert len(_mail(app, "Receipt")) == 3


def test_unfunded_campaign_charges_nobody_and_releases_cards(app):
    cid = make_campaign(app, goal=1000)
    ids = add_pledges(app, cid, [(GOOD, 50), (GOOD, 40)])
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "released"
    assert set(pledge_states(app, cid).values()) == {"released"}
    assert provider_charges(app, ids) == dict.fromkeys(ids, 0)
    provider = app.extensions["payment_backend"].provider
    with app.app_context():
        methods = db.session.scalars(select(Pledge.provider_payment_method_id)).all()
    assert all(provider.is_detached(m) for m in methods)
    assert ledger_count(app) == 0
    assert len(_mail(app, "will not be charged")) == 2


def test_minimum_backers_missed_means_unfunded(app):
    cid = make_campaign(app, goal=50, min_backers=3)
    ids = add_pledges(app, cid, [(GOOD, 100), (GOOD, 100)])
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "released"
    assert provider_charges(app, ids) == dict.fromkeys(ids, 0)


def test_minimum_backers_met_means_funded(app):
    cid = make_campaign(app, goal=50, min_backers=3)
    add_pledges(app, cid, [(GOOD, 20), (GOOD, 20), (GOOD, 20)])
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "settled"


def test_flexible_campaign_keeps_what_was_raised(app):
    cid = make_campaign(app, goal=1000, model="flexible")
    ids = add_pledges(app, cid, [(GOOD, 10)])
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "settled"
    assert provider_charges(app, ids) == {ids[0]: 1}


def test_flexible_campaign_without_pledges_is_not_funded(app):
    cid = make_campaign(app, goal=1000, model="flexible")
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "released"


def test_cancelled_campaign_releases_pledges(app):
    from campaigns import services as campaign_services
    from campaigns.models import Campaign

    cid = make_campaign(app, goal=10)
    ids = add_pledges(app, cid, [(GOOD, 50), (GOOD, 40)])
    with app.app_context(), public_request_context():
        campaign_services.cancel(db.session.get(Campaign, cid))
        db.session.commit()  # the release job runs after this commit
    assert set(pledge_states(app, cid).values()) == {"released"}
    past_deadline(app, cid)
    run_sweep(app)
    assert provider_charges(app, ids) == dict.fromkeys(ids, 0)
    assert campaign(app, cid).status == "cancelled"


def test_a_pledge_in_the_last_moment_is_counted(app):
    cid = make_campaign(app, goal=100)
    add_pledges(app, cid, [(GOOD, 60)])
    past_deadline(app, cid, extra=timedelta(seconds=-5))
    add_pledges(app, cid, [(GOOD, 40)])
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "settled"
    assert campaign(app, cid).final_pledged_amount == 10000


def test_declined_card_is_retried_after_update_and_dropped_otherwise(app):
    cid = make_campaign(app, goal=10)
    fixed, ignored, broke = add_pledges(
        app, cid, [(DECLINE_ON_CHARGE, 20), (DECLINE_ON_CHARGE, 20), (NO_FUNDS, 20)]
    )
    good = add_pledges(app, cid, [(GOOD, 20)])[0]
    past_deadline(app, cid)
    run_sweep(app)
    states = pledge_states(app, cid)
    assert states == {fixed: "failed", ignored: "failed", broke: "failed", good: "charged"}
    assert campaign(app, cid).status == "settling"
    assert len(_mail(app, "card was declined")) == 3
    # The first supporter's email (declines are recorded in whatever order they finish).
    [first_mail] = [m for m in _mail(app, "card was declined") if "To: supporter0@example.org" in m]
    link = re.search(r"http://[^/]+(/pledge/\S+)", first_mail).group(1)

    # 48 hours later: a reminder, once.
    clock.freeze(clock.utcnow() + timedelta(hours=49))
    run_sweep(app)
    run_sweep(app)
    assert len(_mail(app, "card was declined")) == 6

    # The first supporter fixes their card: charged at once.
    supporter = app.test_client()
    assert supporter.get(link + "/card").status_code == 200
    response = submit(supporter, link + "/card", {"card_number": GOOD}, form_page=link + "/card")
    assert response.status_code == 302
    assert pledge_states(app, cid)[fixed] == "charged"

    # The end of the window: one final retry each, then dropped.
    clock.freeze(clock.utcnow() + timedelta(days=7))
    run_sweep(app)
    states = pledge_states(app, cid)
    assert (states[ignored], states[broke]) == ("dropped", "dropped")
    assert campaign(app, cid).status == "settled"
    charges = provider_charges(app, [fixed, ignored, broke, good])
    assert charges == {fixed: 1, ignored: 0, broke: 0, good: 1}
    assert campaign(app, cid).collected_amount == 4000
    with app.app_context():
        attempts = dict(db.session.execute(select(Pledge.id, Pledge.charge_attempts)).all())
    assert attempts[ignored] == 2 and attempts[good] == 1


def test_authentication_required_then_confirmed_on_session(app):
    cid = make_campaign(app, goal=10)
    confirmed, ignored = add_pledges(app, cid, [(NEEDS_AUTH, 30), (NEEDS_AUTH, 30)])
    past_deadline(app, cid)
    run_sweep(app)
    assert set(pledge_states(app, cid).values()) == {"needs_authentication"}
    mails = _mail(app, "asks you to confirm")
    assert len(mails) == 2
    [first_mail] = [m for m in mails if "To: supporter0@example.org" in m]
    link = re.search(r"http://[^/]+(/pledge/\S+)", first_mail).group(1)
    supporter = app.test_client()
    page = supporter.get(link)
    assert "Confirm the payment" in page.get_data(as_text=True)
    response = submit(supporter, link + "/authenticate", {}, form_page=link + "/authenticate")
    assert response.status_code == 302
    assert pledge_states(app, cid)[confirmed] == "charged"
    clock.freeze(clock.utcnow() + timedelta(days=8))
    run_sweep(app)
    assert pledge_states(app, cid)[ignored] == "dropped"
    assert campaign(app, cid).status == "settled"
    assert provider_charges(app, [confirmed, ignored]) == {confirmed: 1, ignored: 0}


def test_a_crash_between_charge_and_commit_is_recovered_without_a_second_charge(make_app):
    app = make_app(CHARGE_LEASE_SECONDS=60)
    cid = make_campaign(app, goal=10)
    ids = add_pledges(app, cid, [(GOOD, 20), (GOOD, 30)])
    past_deadline(app, cid)
    with app.app_context(), public_request_context():
        settlement.decide(cid)
        settlement.start_settling(cid)
        db.session.commit()
        claims = settlement.claim_batch(cid, 10)
        assert len(claims) == 2
        # The provider charged the first, then the worker died before recording it.
        backend = app.extensions["payment_backend"]
        settlement.call_provider(backend, settlement.RateLimiter(1000), claims[0])
    assert set(pledge_states(app, cid).values()) == {"charging"}
    run_sweep(app)  # within the lease: nothing is touched
    assert set(pledge_states(app, cid).values()) == {"charging"}
    clock.freeze(clock.utcnow() + timedelta(seconds=61))
    run_sweep(app)
    assert set(pledge_states(app, cid).values()) == {"charged"}
    assert provider_charges(app, ids) == dict.fromkeys(ids, 1)
    assert ledger_count(app, "pledge_charge") == 2
    assert campaign(app, cid).status == "settled"


def test_recording_twice_writes_the_ledger_once(app):
    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, [(GOOD, 20)])
    past_deadline(app, cid)
    with app.app_context(), public_request_context():
        settlement.decide(cid)
        settlement.start_settling(cid)
        db.session.commit()
        [claim] = settlement.claim_batch(cid, 10)
        result = settlement.call_provider(
            app.extensions["payment_backend"], settlement.RateLimiter(1000), claim
        )
        assert settlement.record_result(claim, result) == "charged"
        assert settlement.record_result(claim, result) == "already_recorded"
    assert ledger_count(app, "pledge_charge") == 1


def test_settle_cli_runs_everything_due(app):
    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, [(GOOD, 20), (DECLINE_ON_CHARGE, 20)])
    past_deadline(app, cid)
    result = app.test_cli_runner().invoke(args=["settle", "--due"])
    assert result.exit_code == 0, result.output
    assert "1 charged" in result.output and "1 failed" in result.output
    again = app.test_cli_runner().invoke(args=["settle", "--due"])
    assert "1 charged" not in again.output


def test_organizers_see_progress_and_supporters_their_receipt(app, client):
    from tests.factories import live_campaign, pledge, register

    slug = live_campaign(
        app,
        goal="10",
        **{"budget_lines-0-amount": "10", "budget_lines-1-item": "", "budget_lines-1-amount": ""},
    )
    supporter = app.test_client()
    pledge(supporter, slug, amount="25")
    mail = sorted(Path(app.config["OUTBOX_FOLDER"]).glob("*.eml"))[-1].read_text()
    link = re.search(r"http://[^/]+(/pledge/\S+)", mail).group(1)
    with app.app_context():
        from campaigns.models import Campaign

        cid = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
    past_deadline(app, cid)
    run_sweep(app)
    organizer = app.test_client()
    from tests.factories import login

    login(organizer, email="org@example.org")
    page = organizer.get(f"/c/{slug}/settlement").get_data(as_text=True)
    assert re.search(r"Charged</td><td class=\"num\" data-status=\"charged\">1<", page)
    assert app.test_client().get(f"/c/{slug}/settlement").status_code == 302
    stranger = app.test_client()
    register(stranger, email="x@example.org", name="X")
    assert stranger.get(f"/c/{slug}/settlement").status_code == 404
    receipt = supporter.get(link).get_data(as_text=True)
    assert "Receipt" in receipt and "€25.00" in receipt and "Charged" in receipt
    detail = app.test_client().get(f"/c/{slug}").get_data(as_text=True)
    assert "Collected: €25.00" in detail


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_claims_skip_rows_locked_by_another_worker(app):
    """On PostgreSQL a second worker's claim skips the rows the first one holds."""
    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, [(GOOD, 20)] * 6)
    past_deadline(app, cid)
    with app.app_context():
        settlement.decide(cid)
        settlement.start_settling(cid)
        db.session.commit()
        engine = db.engine
    with engine.connect() as holder:
        holder.exec_driver_sql("SELECT id FROM pledges ORDER BY id LIMIT 3 FOR UPDATE")
        with app.app_context():
            claims = settlement.claim_batch(cid, 10)
        assert len(claims) == 3
        holder.rollback()


def test_progress_is_available_as_json_for_the_live_page(app, client):
    from tests.factories import live_campaign, login, pledge

    slug = live_campaign(app)
    pledge(app.test_client(), slug, amount="25")
    login(client, email="org@example.org")
    body = client.get(f"/c/{slug}/settlement?format=json").get_json()
    assert body == {"status": "live", "counts": {"active": 1}}


def test_releasing_ends_unfinished_pledges_with_an_event(app):
    """A pledge whose card was never saved ends cancelled when its campaign is released,
    with cancelled_at and an event, like every other transition."""
    import secrets as _secrets

    from core.money import Money
    from payments import services
    from payments.models import PledgeEvent

    cid = make_campaign(app, goal=1000)
    add_pledges(app, cid, [(GOOD, 20)])
    with app.app_context(), public_request_context():
        pending, _ = services.start_pledge(
            db.session.get(Campaign, cid),
            amount=Money(500, "EUR"),
            submission_key=_secrets.token_urlsafe(20),
            guest_email="unfinished@example.org",
        )
        db.session.commit()
        pending_id = pending.id
    past_deadline(app, cid)
    run_sweep(app)
    with app.app_context():
        pledge = db.session.get(Pledge, pending_id)
        kinds = db.session.scalars(
            select(PledgeEvent.kind).where(PledgeEvent.pledge_id == pending_id)
        ).all()
    assert pledge.status == "cancelled" and pledge.cancelled_at is not None
    assert kinds[-1] == "cancelled_unfinished"

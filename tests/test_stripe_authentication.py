"""3-D Secure with Stripe (issue 16): a charge that waits for the supporter's bank is
finished in their browser by Stripe.js, and its outcome is recorded once, whether the
return page or the signed `payment_intent.*` webhook tells it first, or both, or the
same event twice.

Against a real localstripe. localstripe answers an off-session charge of a 3-D Secure
card with a PaymentIntent that `requires_action` (Stripe refuses it with
`authentication_required` instead; tests/test_settlement.py covers that path with the
simulated provider). What Stripe.js does in the browser is done here with the calls
localstripe's Stripe.js stand-in makes (`POST /v1/payment_intents/<id>/_authenticate`);
tests/e2e runs the stand-in itself in Chromium.
"""

from __future__ import annotations

import re

import requests
from sqlalchemy import func, select

from core import clock
from core.extensions import db
from ledger.models import LedgerPosting, LedgerTransaction
from payments.models import Pledge, PledgeEvent
from payments.tokens import manage_key
from tests.factories import (
    NEEDS_AUTH,
    campaign_row,
    live_campaign,
    mail_to,
    past_deadline,
    pledges,
    run_sweep,
)
from tests.test_stripe_backend import _card_page, _client, _event, _post, _sign, _start


def _waiting_for_the_bank(app) -> tuple[str, Pledge, str]:
    """A pledge whose 3-D Secure card was saved at localstripe, charged by settlement
    at the deadline, now waiting for its supporter. Returns (slug, pledge, page path)."""
    client = app.test_client()
    slug = live_campaign(app, funding_model="flexible")
    card_url = _start(app, client, slug, amount="30")
    _card_page(client, card_url)
    api = _client(app)
    setup_id = pledges(app)[-1].provider_setup_id
    method = api.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": NEEDS_AUTH, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    assert api.v1.setup_intents.confirm(setup_id, params={"payment_method": method.id}).status == (
        "requires_action"
    )
    assert api.v1.setup_intents.confirm(setup_id).status == "succeeded"  # saving's own 3DS
    assert client.get(card_url + "/return").status_code == 302
    past_deadline(app, campaign_row(app, slug).id)
    run_sweep(app)
    [waiting] = pledges(app)
    assert waiting.status == "needs_authentication"
    assert waiting.provider_action_id and waiting.provider_action_id.startswith("pi_")
    with app.app_context():
        key = manage_key(waiting.public_id, None, waiting.link_version)
    return slug, waiting, f"/pledge/{key}"


def _secret_on_page(client, link) -> str | None:
    html = client.get(link + "/authenticate").get_data(as_text=True)
    found = re.search(r'data-client-secret="([^"]+)"', html)
    return found.group(1) if found else None


def _bank_says(app, secret: str, success: bool) -> str:
    """What localstripe's Stripe.js stand-in does when the supporter completes (or
    fails) their bank's 3-D Secure step."""
    intent_id = secret.split("_secret_")[0]
    response = requests.post(
        f"{app.config['STRIPE_API_BASE']}/v1/payment_intents/{intent_id}/_authenticate",
        params={"success": "true" if success else "false"},
        json={"key": app.config["STRIPE_PUBLISHABLE_KEY"], "client_secret": secret},
        timeout=10,
    )
    try:
        assert response.status_code == 200, response.text
        return response.json()["status"]
    finally:
        response.close()


def _tell(app, event_type, intent_id, pledge: Pledge, event_id=None) -> str:
    intent = {"id": intent_id, "object": "payment_intent", "metadata": {"pledge": pledge.public_id}}
    payload = _event(event_type, intent, event_id=event_id)
    return _post(app.test_client(), payload, _sign(payload)).get_json()["status"]


def _now(app, pledge_id) -> Pledge:
    with app.app_context():
        return db.session.get_one(Pledge, pledge_id)


def _charge_entries(app, pledge_id) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(
                LedgerTransaction.kind == "pledge_charge",
                LedgerTransaction.campaign_id.in_(
                    select(Pledge.campaign_id).where(Pledge.id == pledge_id)
                ),
            )
        )


def _events(app, pledge_id) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(PledgeEvent.kind)
                .where(PledgeEvent.pledge_id == pledge_id)
                .order_by(PledgeEvent.id)
            )
        )


def test_the_bank_step_runs_in_the_browser_and_the_return_page_records_it_once(stripe_app):
    app = stripe_app
    slug, waiting, link = _waiting_for_the_bank(app)
    supporter = app.test_client()
    page = supporter.get(link + "/authenticate")
    html = page.get_data(as_text=True)
    secret = _secret_on_page(supporter, link)
    assert secret and secret.startswith(waiting.provider_action_id + "_secret_")
    assert "js/stripe-authenticate.js" in html and f"{app.config['STRIPE_API_BASE']}" in html
    assert app.config["STRIPE_API_BASE"] in page.headers["Content-Security-Policy"]
    assert 'data-return-url="http' in html and "/authenticate/done" in html

    # Back before the bank's step is done (another tab, the back button): still waiting.
    early = supporter.get(link + "/authenticate/done", follow_redirects=True)
    assert "has not confirmed the payment yet" in early.get_data(as_text=True)
    assert _now(app, waiting.id).provider_action_id == waiting.provider_action_id
    assert _bank_says(app, secret, success=True) == "succeeded"
    done = supporter.get(link + "/authenticate/done")
    assert done.status_code == 302 and done.headers["Location"].endswith(link)
    charged = _now(app, waiting.id)
    assert charged.status == "charged" and charged.provider_charge_id == waiting.provider_action_id
    assert charged.charged_amount == 3000 and charged.provider_action_id is None
    assert charged.failure_code == ""  # was authentication_required
    with app.app_context():
        event = db.session.scalar(
            select(PledgeEvent).where(
                PledgeEvent.pledge_id == waiting.id, PledgeEvent.kind == "charge_authenticated"
            )
        )
        assert (event.from_status, event.to_status) == ("needs_authentication", "charged")
        assert (event.amount, event.detail) == (3000, waiting.provider_action_id)
    [receipt] = [m for m in mail_to(app, "sup@example.org") if "Subject: Receipt" in m]
    assert "has been charged" in receipt
    assert campaign_row(app, slug).collected_amount == 3000
    assert _charge_entries(app, waiting.id) == 1
    assert "charge_authenticated" in _events(app, waiting.id)
    # The webhook comes after, twice (a retry): nothing is recorded twice.
    intent_id = waiting.provider_action_id
    assert _tell(app, "payment_intent.succeeded", intent_id, waiting, "evt_3ds_1") == (
        "already recorded"
    )
    assert _tell(app, "payment_intent.succeeded", intent_id, waiting, "evt_3ds_1") == "duplicate"
    # The supporter reloads the return page: still once.
    assert supporter.get(link + "/authenticate/done").status_code == 302
    assert _charge_entries(app, waiting.id) == 1
    assert campaign_row(app, slug).collected_amount == 3000
    output = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert output.exit_code == 0, output.output


def test_the_webhook_first_then_the_return_page_reach_the_same_state(stripe_app):
    app = stripe_app
    slug, waiting, link = _waiting_for_the_bank(app)
    supporter = app.test_client()
    secret = _secret_on_page(supporter, link)
    assert _bank_says(app, secret, success=True) == "succeeded"
    intent_id = waiting.provider_action_id
    assert _tell(app, "payment_intent.succeeded", intent_id, waiting) == "charged"
    done = supporter.get(link + "/authenticate/done", follow_redirects=True)
    assert "Thank you: your payment is confirmed." in done.get_data(as_text=True)
    assert _now(app, waiting.id).status == "charged"
    assert _charge_entries(app, waiting.id) == 1
    assert campaign_row(app, slug).collected_amount == 3000


def test_a_failed_bank_step_keeps_the_pledge_waiting_and_a_new_attempt_succeeds(stripe_app):
    """The supporter fails 3-D Secure: told so, the pledge still waits; a failure event
    (and its duplicate) changes nothing more. Trying again makes a new on-session
    payment, whose own bank step runs in the browser and is recorded."""
    from tests.factories import submit

    app = stripe_app
    slug, waiting, link = _waiting_for_the_bank(app)
    supporter = app.test_client()
    first = _secret_on_page(supporter, link)
    assert _bank_says(app, first, success=False) == "requires_payment_method"
    back = supporter.get(link + "/authenticate/done")
    assert back.status_code == 302 and back.headers["Location"].endswith("/authenticate")
    failed = supporter.get(back.headers["Location"])
    assert "Your bank did not confirm the payment." in failed.get_data(as_text=True)
    after = _now(app, waiting.id)
    assert after.status == "needs_authentication" and after.provider_action_id is None
    assert after.failure_code == "payment_intent_authentication_failure"
    first_id = waiting.provider_action_id
    assert _tell(app, "payment_intent.payment_failed", first_id, waiting) == "stale"
    assert _events(app, waiting.id).count("authentication_failed") == 1
    with app.app_context():
        noted = db.session.scalar(
            select(PledgeEvent.detail).where(
                PledgeEvent.pledge_id == waiting.id, PledgeEvent.kind == "authentication_failed"
            )
        )
    assert noted == "payment_intent_authentication_failure"
    # No payment waits now: the page offers a fresh attempt, made on-session.
    assert _secret_on_page(supporter, link) is None
    response = submit(supporter, link + "/authenticate", {}, form_page=link + "/authenticate")
    assert response.status_code == 302 and response.headers["Location"].endswith("/authenticate")
    second = _secret_on_page(supporter, link)
    assert second and not second.startswith(first_id)
    assert _bank_says(app, second, success=True) == "succeeded"
    assert supporter.get(link + "/authenticate/done").status_code == 302
    charged = _now(app, waiting.id)
    assert charged.status == "charged" and charged.provider_charge_id == second.split("_secret_")[0]
    assert campaign_row(app, slug).collected_amount == 3000
    assert _charge_entries(app, waiting.id) == 1


def test_a_bank_step_finished_after_the_window_is_followed_and_refunded(stripe_app):
    """The supporter completes 3-D Secure in a tab left open after the retry window
    dropped the pledge: Stripe took the money, so the ledger follows it and it is
    refunded at once; never lost, never kept."""
    from datetime import timedelta

    app = stripe_app
    slug, waiting, link = _waiting_for_the_bank(app)
    secret = _secret_on_page(app.test_client(), link)
    clock.freeze(clock.utcnow() + timedelta(days=8))
    run_sweep(app)
    assert _now(app, waiting.id).status == "dropped"
    assert _bank_says(app, secret, success=True) == "succeeded"
    outcome = _tell(app, "payment_intent.succeeded", waiting.provider_action_id, waiting)
    assert outcome == "followed"
    after = _now(app, waiting.id)
    assert after.status == "refunded" and after.charge_key == waiting.charge_key
    with app.app_context():
        refunds = _client(app).v1.refunds.list(
            params={"payment_intent": waiting.provider_action_id}
        )
        assert sum(r.amount for r in refunds.data) == 3000
        supporters_net = db.session.scalar(
            select(func.sum(LedgerPosting.amount))
            .join(LedgerTransaction)
            .where(
                LedgerTransaction.campaign_id == campaign_row(app, slug).id,
                LedgerPosting.account == "supporters",
            )
        )
    assert supporters_net == 0  # charged, then all of it returned
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0


def test_payment_events_not_about_a_waiting_payment_change_nothing(stripe_app):
    app = stripe_app
    _slug, waiting, _link = _waiting_for_the_bank(app)
    forged = _event("payment_intent.succeeded", {"id": "pi_x", "metadata": {"pledge": "nope"}})
    assert _post(app.test_client(), forged, _sign(forged)).get_json()["status"] == "ignored"
    assert _post(app.test_client(), forged, "t=1,v1=00").status_code == 400
    # While settlement is charging the pledge, its own path records the answer.
    with app.app_context():
        db.session.execute(
            Pledge.__table__.update().where(Pledge.id == waiting.id).values(status="charging")
        )
        db.session.commit()
    assert _tell(app, "payment_intent.succeeded", waiting.provider_action_id, waiting) == (
        "settlement records it"
    )
    assert _charge_entries(app, waiting.id) == 0


def test_an_older_payment_finished_in_a_second_tab_is_the_charge_and_a_newer_one_is_refunded(
    stripe_app,
):
    """Tab one shows the bank's step for the payment settlement made; the supporter
    starts a fresh attempt in tab two, then finishes both. The first to succeed is the
    pledge's charge; the other is refunded at Stripe, never kept twice."""
    from tests.factories import submit

    app = stripe_app
    slug, waiting, link = _waiting_for_the_bank(app)
    tab_one, tab_two = app.test_client(), app.test_client()
    older = _secret_on_page(tab_one, link)
    # Its form was opened before: a POST with its session's CSRF token.
    submit(tab_two, link + "/authenticate", {}, form_page="/login")
    newer = _secret_on_page(tab_two, link)
    assert older and newer and older != newer
    older_id, newer_id = older.split("_secret_")[0], newer.split("_secret_")[0]
    assert _bank_says(app, older, success=True) == "succeeded"
    assert _tell(app, "payment_intent.succeeded", older_id, waiting) == "charged"
    assert _now(app, waiting.id).provider_charge_id == older_id
    assert _bank_says(app, newer, success=True) == "succeeded"
    assert _tell(app, "payment_intent.succeeded", newer_id, waiting) == "refunded_extra"
    assert tab_two.get(link + "/authenticate/done").status_code == 302
    after = _now(app, waiting.id)
    assert after.status == "charged" and after.provider_charge_id == older_id
    refunded = _client(app).v1.refunds.list(params={"payment_intent": newer_id})
    assert sum(r.amount for r in refunded.data) == 3000
    assert campaign_row(app, slug).collected_amount == 3000
    assert _charge_entries(app, waiting.id) == 1

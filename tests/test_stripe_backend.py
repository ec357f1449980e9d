"""The Stripe backend against a real localstripe server, webhooks included.

localstripe ignores idempotency keys and off-session authentication; those paths are
covered by the simulated backend's tests (test_simulated_backend.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import pytest
import stripe
from sqlalchemy import select

from core.extensions import db
from payments.models import Pledge, ProcessedWebhookEvent
from tests.conftest import STRIPE_TEST_CONFIG
from tests.factories import campaign_row, confirmed, live_campaign, pledge_form, pledges, submit

SECRET = STRIPE_TEST_CONFIG["STRIPE_WEBHOOK_SECRET"]


def _client(app) -> stripe.StripeClient:
    return app.extensions["payment_backend"].client


def _start(app, client, slug, amount="30"):
    data = {
        "amount": amount,
        "confirmed_amount": confirmed(amount),
        "email": "sup@example.org",
        "visibility": "anonymous",
        **pledge_form(client, slug),
    }
    response = submit(client, f"/c/{slug}/pledge", data)
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    card_url = response.headers["Location"]
    assert card_url.endswith("/card")
    return card_url


def _card_page(client, card_url):
    page = client.get(card_url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    secret = re.search(r'data-client-secret="([^"]+)"', html).group(1)
    return page, html, secret


def _browser_confirms(app, setup_id, number="4242424242424242"):
    """What Stripe.js does in the supporter's browser."""
    api = _client(app)
    method = api.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return api.v1.setup_intents.confirm(setup_id, params={"payment_method": method.id})


def _pledge(app) -> Pledge:
    [only] = pledges(app)
    return only


def test_stripe_pledge_flow(stripe_app):
    app = stripe_app
    client = app.test_client()
    slug = live_campaign(app)
    page_html = client.get(f"/c/{slug}/pledge").get_data(as_text=True)
    assert "Demo payments." not in page_html and 'name="card_number"' not in page_html
    card_url = _start(app, client, slug)
    made = _pledge(app)
    assert made.status == "pending" and made.provider_customer_id.startswith("cus_")
    customer = _client(app).v1.customers.retrieve(made.provider_customer_id)
    assert customer.metadata["pledge"] == made.public_id
    assert not getattr(customer, "email", None), "no personal data goes to Stripe"

    page, html, secret = _card_page(client, card_url)
    base = app.config["STRIPE_API_BASE"]
    assert f'src="{base}/js.stripe.com/v3/"' in html
    csp = page.headers["Content-Security-Policy"]
    assert f"script-src 'self' {base}" in csp
    assert campaign_row(app, slug).backer_count == 0

    setup_id = _pledge(app).provider_setup_id
    assert secret.startswith(setup_id)
    intent = _client(app).v1.setup_intents.retrieve(setup_id)
    assert intent.usage == "off_session" and intent.metadata["pledge"] == made.public_id
    assert _browser_confirms(app, setup_id).status == "succeeded"

    response = client.get(card_url + "/return")
    assert response.status_code == 302
    made = _pledge(app)
    assert made.status == "active" and made.card_last4 == "4242"
    assert made.provider_payment_method_id.startswith("pm_")
    campaign = campaign_row(app, slug)
    assert (campaign.pledged_amount, campaign.backer_count) == (3000, 1)
    # Stripe.js is never loaded outside payment pages.
    other = client.get(f"/c/{slug}")
    assert base not in other.get_data(as_text=True)
    assert base not in other.headers["Content-Security-Policy"]


def test_declined_card_at_localstripe_leaves_the_pledge_pending(stripe_app):
    app = stripe_app
    client = app.test_client()
    slug = live_campaign(app)
    card_url = _start(app, client, slug)
    _card_page(client, card_url)
    with pytest.raises(stripe.CardError):
        _browser_confirms(app, _pledge(app).provider_setup_id, "4000000000000002")
    response = client.get(card_url + "/return")
    assert response.status_code == 302 and response.headers["Location"].endswith("/card")
    assert _pledge(app).status == "pending"
    assert campaign_row(app, slug).backer_count == 0


def _event(event_type, obj, *, event_id=None, livemode=False):
    return json.dumps(
        {
            "id": event_id or f"evt_{time.time_ns()}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": livemode,
            "type": event_type,
            "data": {"object": obj},
        }
    ).encode()


def _sign(payload: bytes, secret=SECRET, timestamp=None) -> str:
    timestamp = timestamp or int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _post(client, payload, signature):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/payments/stripe/webhook", data=payload, headers=headers)


def _processed(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(ProcessedWebhookEvent)).all())


@pytest.fixture
def confirmed_at_stripe(stripe_app):
    """A pledge whose card Stripe has saved, before our return URL or webhook saw it."""
    app = stripe_app
    client = app.test_client()
    slug = live_campaign(app)
    card_url = _start(app, client, slug)
    _card_page(client, card_url)
    made = _pledge(app)
    _browser_confirms(app, made.provider_setup_id)
    obj = {
        "id": made.provider_setup_id,
        "object": "setup_intent",
        "status": "succeeded",
        "metadata": {"pledge": made.public_id},
    }
    return app, slug, card_url, obj


def test_webhook_activates_the_pledge_once(confirmed_at_stripe):
    app, slug, card_url, obj = confirmed_at_stripe
    client = app.test_client()
    payload = _event("setup_intent.succeeded", obj, event_id="evt_once")
    response = _post(client, payload, _sign(payload))
    assert response.status_code == 200 and response.get_json()["status"] == "activated"
    assert _pledge(app).status == "active"
    again = _post(client, payload, _sign(payload))
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    # A different event id for the same object, and the browser's return, change nothing.
    other = _event("setup_intent.succeeded", obj)
    assert _post(client, other, _sign(other)).get_json()["status"] == "unchanged"
    client.get(card_url + "/return")
    campaign = campaign_row(app, slug)
    assert (campaign.pledged_amount, campaign.backer_count) == (3000, 1)
    assert _processed(app) == 2


@pytest.mark.parametrize(
    "tamper",
    [
        "bad_signature",
        "missing_signature",
        "wrong_secret",
        "stale_timestamp",
        "livemode",
        "garbage",
    ],
)
def test_bad_webhooks_are_rejected_and_change_nothing(confirmed_at_stripe, tamper):
    app, slug, _card_url, obj = confirmed_at_stripe
    payload = _event("setup_intent.succeeded", obj, livemode=tamper == "livemode")
    signature = {
        "bad_signature": _sign(payload)[:-4] + "0000",
        "missing_signature": None,
        "wrong_secret": _sign(payload, secret="whsec_someone_else"),
        "stale_timestamp": _sign(payload, timestamp=int(time.time()) - 3600),
        "livemode": _sign(payload),
        "garbage": _sign(b"not json"),
    }[tamper]
    if tamper == "garbage":
        payload = b"not json"
    response = _post(app.test_client(), payload, signature)
    assert response.status_code == 400
    assert _pledge(app).status == "pending"
    assert campaign_row(app, slug).backer_count == 0
    assert _processed(app) == 0


def test_events_for_objects_that_are_not_ours_are_ignored(confirmed_at_stripe):
    app, _slug, _card_url, obj = confirmed_at_stripe
    for foreign in ({**obj, "metadata": {}}, {**obj, "metadata": {"pledge": "someone-else"}}):
        payload = _event("setup_intent.succeeded", foreign)
        response = _post(app.test_client(), payload, _sign(payload))
        assert response.status_code == 200 and response.get_json()["status"] == "ignored"
    payload = _event("customer.created", {"id": "cus_x", "object": "customer"})
    assert _post(app.test_client(), payload, _sign(payload)).get_json()["status"] == "ignored"
    assert _pledge(app).status == "pending"


def test_out_of_order_events_never_undo_a_saved_card(confirmed_at_stripe):
    app, slug, _card_url, obj = confirmed_at_stripe
    client = app.test_client()
    succeeded = _event("setup_intent.succeeded", obj)
    failed_late = _event("setup_intent.setup_failed", {**obj, "status": "requires_payment_method"})
    assert _post(client, succeeded, _sign(succeeded)).status_code == 200
    response = _post(client, failed_late, _sign(failed_late))
    assert response.status_code == 200
    assert _pledge(app).status == "active"
    assert campaign_row(app, slug).backer_count == 1


def test_webhook_is_not_served_with_the_simulated_backend(app):
    payload = _event("setup_intent.succeeded", {"id": "seti_x"})
    assert _post(app.test_client(), payload, _sign(payload)).status_code == 404


def test_one_card_saved_twice_at_stripe_gets_one_card_tag(stripe_app):
    """Stripe's card.fingerprint is the same for the same card number, whoever saves
    it: kept as a keyed hash, it makes one card one backer in a matching round."""
    app = stripe_app
    client = app.test_client()
    slug = live_campaign(app)
    for number in ("4242424242424242", "4242424242424242", "5555555555554444"):
        card_url = _start(app, client, slug)
        _card_page(client, card_url)  # the card page starts the SetupIntent
        setup_id = pledges(app)[-1].provider_setup_id
        assert _browser_confirms(app, setup_id, number).status == "succeeded"
        assert client.get(card_url + "/return").status_code == 302
    first, second, other = (p.card_tag for p in pledges(app))
    assert first and first == second and other and other != first
    fingerprint = (
        _client(app)
        .v1.payment_methods.retrieve(pledges(app)[0].provider_payment_method_id)
        .card.fingerprint
    )
    assert fingerprint and fingerprint not in first  # only a keyed hash of it is kept

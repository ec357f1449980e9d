"""Personal API tokens and webhooks, from outside: a real HTTP receiver on this
machine verifies each delivery's signature with the Standard Webhooks library."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from core import clock
from core.clock import utcnow
from core.extensions import db
from integrations import webhooks
from integrations.models import ApiToken, WebhookDelivery, WebhookEndpoint
from tests.factories import (
    live_campaign,
    login,
    pledge,
    register,
    submit,
)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records what it is sent and answers with the
    next status in `answers` (200 once they run out)."""

    def __init__(self, answers=()):
        self.received: list[tuple[dict, bytes]] = []
        self.answers = list(answers)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [json.loads(body)["type"] for _headers, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def _organizer(app) -> tuple[object, str]:
    slug = live_campaign(app)  # its owner is org@example.org
    organizer = app.test_client()
    login(organizer, "org@example.org")
    return organizer, slug


def _add_webhook(organizer, slug, url, events=("pledge.created", "ledger.entry")):
    return submit(
        organizer,
        f"/c/{slug}/webhooks",
        {"url": url, "events": list(events)},
        form_page=f"/c/{slug}/webhooks",
    )


def _endpoint(app) -> WebhookEndpoint:
    with app.app_context():
        return db.session.scalars(select(WebhookEndpoint)).one()


def _deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


# ---- Webhooks ----------------------------------------------------------------------------


def test_each_delivery_is_signed_the_standard_webhooks_way(app, receiver):
    organizer, slug = _organizer(app)
    assert _add_webhook(organizer, slug, receiver.url).status_code == 302
    pledge(app.test_client(), slug, amount="12", visibility="pseudonym", public_name="night shift")
    assert receiver.events() == ["pledge.created"]
    headers, body = receiver.received[0]
    secret = _endpoint(app).secret
    event = Webhook(secret).verify(body, headers)
    assert event["data"]["pledge"]["amount"] == {"amount": 1200, "currency": "EUR"}
    assert event["data"]["pledge"]["name"] == "night shift"
    assert b"@" not in body  # no supporter's address
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"1200", b"9900"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(body, headers)
    log = organizer.get(f"/c/{slug}/webhooks").get_data(as_text=True)
    assert "pledge.created" in log and "delivered" in log


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(app):
    failing = Receiver(answers=[500, 503])
    try:
        organizer, slug = _organizer(app)
        _add_webhook(organizer, slug, failing.url, events=["pledge.created"])
        pledge(app.test_client(), slug, amount="5")
        [delivery] = _deliveries(app)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending",
            1,
            500,
        )
        first_wait = delivery.next_attempt_at - utcnow()
        with app.app_context():
            assert webhooks.deliver_due() == 0  # not due yet
        clock.freeze(delivery.next_attempt_at + timedelta(seconds=1))
        with app.app_context():
            assert webhooks.deliver_due() == 1
        [delivery] = _deliveries(app)
        assert (delivery.status, delivery.attempts) == ("pending", 2)
        assert delivery.next_attempt_at - utcnow() > first_wait  # the pause grows
        clock.freeze(delivery.next_attempt_at + timedelta(seconds=1))
        with app.app_context():
            webhooks.deliver_due()
        [delivery] = _deliveries(app)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "delivered",
            3,
            200,
        )
        # The same message each time: receivers drop duplicates by webhook-id.
        assert len({h["webhook-id"] for h, _ in failing.received}) == 1
        assert len({b for _, b in failing.received}) == 1
    finally:
        failing.close()


def test_a_receiver_that_never_answers_is_given_up_after_a_day(app):
    failing = Receiver(answers=[500] * 50)
    try:
        organizer, slug = _organizer(app)
        _add_webhook(organizer, slug, failing.url, events=["pledge.created"])
        pledge(app.test_client(), slug, amount="5")
        for _ in range(30):
            [delivery] = _deliveries(app)
            if delivery.status != "pending":
                break
            clock.freeze(delivery.next_attempt_at + timedelta(seconds=1))
            with app.app_context():
                webhooks.deliver_due()
        assert delivery.status == "failed"
        assert utcnow() - delivery.created_at <= timedelta(days=1, hours=1)
        assert 5 <= delivery.attempts <= 12
    finally:
        failing.close()


def test_a_change_that_rolls_back_sends_nothing(app, receiver):
    from core.urls import public_request_context
    from payments import services
    from payments.backends import get_backend

    organizer, slug = _organizer(app)
    _add_webhook(organizer, slug, receiver.url)
    with app.app_context(), public_request_context():
        from campaigns.models import Campaign
        from core.money import Money

        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
        made, _ = services.start_pledge(
            campaign, amount=Money(700, "EUR"), submission_key="k" * 30, guest_email="a@b.org"
        )
        session = services.start_card_setup(made)
        db.session.commit()
        saved = get_backend().provider.confirm_setup(session.setup_id, "4242424242424242")
        services.card_saved(made, saved)  # signals queue a delivery in this transaction
        assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 1
        db.session.rollback()
    assert _deliveries(app) == [] and receiver.received == []


def test_a_test_event_reaches_the_endpoint_whatever_it_chose(app, receiver):
    organizer, slug = _organizer(app)
    _add_webhook(organizer, slug, receiver.url, events=["campaign.settled"])
    endpoint = _endpoint(app)
    submit(organizer, f"/c/{slug}/webhooks/{endpoint.id}/test", {}, form_page=f"/c/{slug}/webhooks")
    assert receiver.events() == ["test"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "ftp://example.org/hook",
        "http://user:pass@example.org/hook",
    ],
)
def test_webhooks_to_private_addresses_are_refused_outside_development(app, url):
    app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = False
    organizer, slug = _organizer(app)
    response = _add_webhook(organizer, slug, url)
    assert response.status_code == 422
    assert _deliveries(app) == []
    with app.app_context():
        assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 0


def test_production_needs_https_and_a_target_turned_private_is_not_sent_to(app, receiver):
    organizer, slug = _organizer(app)
    _add_webhook(organizer, slug, receiver.url, events=["pledge.created"])
    with app.test_request_context():
        app.config["PRODUCTION"] = True
        try:
            with pytest.raises(webhooks.UnsafeTarget):
                webhooks.check_target("http://example.org/hook")
        finally:
            app.config["PRODUCTION"] = False
    # Registered in development; the operators then forbid private targets: the next
    # delivery is checked again and not sent.
    app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = False
    pledge(app.test_client(), slug, amount="5")
    [delivery] = _deliveries(app)
    assert receiver.received == [] and delivery.status == "pending"
    assert "public internet addresses" in delivery.last_error


# ---- Tokens ------------------------------------------------------------------------------


def _token(organizer, scopes=("backers:read",), days="30") -> str:
    page = submit(
        organizer,
        "/account/tokens",
        {"name": "membership system", "scopes": list(scopes), "days": days},
        form_page="/account/tokens",
    ).get_data(as_text=True)
    return page.split("<pre><code>", 1)[1].split("</code>", 1)[0]


def test_a_token_is_shown_once_kept_hashed_scoped_and_revocable(app, client):
    organizer, slug = _organizer(app)
    pledge(
        client,
        slug,
        amount="9",
        visibility="pseudonym",
        public_name="a docker",
        private_message="call me",
    )
    secret = _token(organizer)
    assert secret.startswith("cf_") and len(secret) > 40
    assert secret not in organizer.get("/account/tokens").get_data(as_text=True)
    with app.app_context():
        row = db.session.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.prefix, row.name, row.scopes)
    bearer = {"Authorization": f"Bearer {secret}"}
    anyone = app.test_client()
    backers = anyone.get(f"/api/v1/organizer/campaigns/{slug}/backers", headers=bearer)
    assert backers.status_code == 200
    [only] = backers.get_json()["backers"]
    assert (only["shown_as"], only["private_message"]) == ("a docker", "call me")
    assert "@" not in backers.get_data(as_text=True)
    assert backers.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in backers.headers
    # Not its scope; no token; a session cookie is no token.
    assert (
        anyone.get(f"/api/v1/organizer/campaigns/{slug}/settlement", headers=bearer).status_code
        == 403
    )
    assert anyone.get(f"/api/v1/organizer/campaigns/{slug}/backers").status_code == 401
    assert organizer.get(f"/api/v1/organizer/campaigns/{slug}/backers").status_code == 401
    # Revoked: refused at once.
    with app.app_context():
        token_id = db.session.scalars(select(ApiToken.id)).one()
    submit(organizer, f"/account/tokens/{token_id}/revoke", {}, form_page="/account/tokens")
    assert (
        anyone.get(f"/api/v1/organizer/campaigns/{slug}/backers", headers=bearer).status_code == 401
    )


def test_a_token_expires_and_reads_only_its_owners_campaigns(app):
    organizer, slug = _organizer(app)
    secret = _token(organizer, scopes=["settlement:read"], days="30")
    bearer = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    assert (
        client.get(f"/api/v1/organizer/campaigns/{slug}/settlement", headers=bearer).get_json()[
            "status"
        ]
        == "live"
    )
    stranger = app.test_client()
    register(stranger, email="stranger@example.org", name="Stranger")
    theirs = {"Authorization": f"Bearer {_token(stranger, scopes=['settlement:read'])}"}
    assert (
        client.get(f"/api/v1/organizer/campaigns/{slug}/settlement", headers=theirs).status_code
        == 404
    )
    clock.freeze(utcnow() + timedelta(days=31))
    assert (
        client.get(f"/api/v1/organizer/campaigns/{slug}/settlement", headers=bearer).status_code
        == 401
    )


def test_webhooks_are_managed_with_a_token(app, receiver):
    organizer, slug = _organizer(app)
    bearer = {"Authorization": f"Bearer {_token(organizer, scopes=['webhooks:manage'])}"}
    client = app.test_client()
    made = client.post(
        f"/api/v1/organizer/campaigns/{slug}/webhooks",
        json={"url": receiver.url, "events": ["pledge.created"]},
        headers=bearer,
    )
    assert made.status_code == 201 and made.get_json()["secret"].startswith("whsec_")
    bad = client.post(
        f"/api/v1/organizer/campaigns/{slug}/webhooks",
        json={"url": receiver.url, "events": ["pledge.exploded"]},
        headers=bearer,
    )
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    listed = client.get(f"/api/v1/organizer/campaigns/{slug}/webhooks", headers=bearer)
    assert [w["url"] for w in listed.get_json()["webhooks"]] == [receiver.url]
    assert "secret" not in listed.get_json()["webhooks"][0]
    endpoint_id = made.get_json()["id"]
    assert (
        client.delete(
            f"/api/v1/organizer/campaigns/{slug}/webhooks/{endpoint_id}", headers=bearer
        ).status_code
        == 204
    )
    pledge(app.test_client(), slug, amount="5")
    assert receiver.received == []

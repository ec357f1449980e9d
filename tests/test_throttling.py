"""Per-client limits slow card testing, spam registrations and report floods."""

from __future__ import annotations

from sqlalchemy import func, select

from core.extensions import db
from payments.models import Pledge
from tests.factories import live_campaign, pledge, pledge_form, submit


def test_guest_pledges_are_throttled_per_client(make_app):
    app = make_app(PLEDGE_RATE_LIMIT="10 per minute")
    slug = live_campaign(app)
    client = app.test_client()
    statuses = [
        pledge(client, slug, email=f"card-test-{n}@example.org").status_code for n in range(14)
    ]
    assert statuses[:10] == [302] * 10
    assert set(statuses[10:]) == {429}
    with app.app_context():
        assert db.session.scalar(select(func.count(Pledge.id))) == 10
    # Another client is not affected.
    other = app.test_client()
    data = {
        "amount": "25",
        "confirmed_amount": "2500",
        "card_number": "4242424242424242",
        "email": "real@example.org",
        "visibility": "anonymous",
        **pledge_form(other, slug),
    }
    response = submit(other, f"/c/{slug}/pledge", data, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert response.status_code == 302


def test_registrations_are_throttled_per_client(make_app):
    app = make_app(REGISTER_RATE_LIMIT="3 per hour")
    client = app.test_client()
    codes = []
    for n in range(5):
        codes.append(
            submit(
                app.test_client(),
                "/register",
                {
                    "email": f"spam{n}@example.org",
                    "display_name": "Spam",
                    "password": "correct horse battery staple",
                    "confirm": "correct horse battery staple",
                },
            ).status_code
        )
    assert codes[3:] == [429, 429]
    assert client.get("/register").status_code == 200  # the form itself still shows


def test_reports_are_throttled_per_client(make_app):
    app = make_app(REPORT_RATE_LIMIT="2 per hour")
    slug = live_campaign(app)
    client = app.test_client()
    codes = [
        submit(client, f"/c/{slug}/report", {"reason": "spam", "details": "x" * 20}).status_code
        for _ in range(3)
    ]
    assert codes[2] == 429

from __future__ import annotations

import re

from sqlalchemy import select

from campaigns.models import Campaign
from core.extensions import db
from core.money import Money, MoneyError
from payments.models import Pledge
from tests.campaign_helpers import create_draft, launched
from tests.conftest import register, submit

SUBMISSION_KEY = re.compile(r'name="submission_key" type="hidden" value="([^"]+)"')


def live_campaign(app, **overrides) -> str:
    organizer = app.test_client()
    register(organizer, email="org@example.org", name="Organizers")
    response = create_draft(organizer, **overrides)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    slug = response.headers["Location"].rsplit("/", 1)[-1]
    return launched(organizer, slug)


def pledge_form(client, slug) -> dict:
    page = client.get(f"/c/{slug}/pledge").get_data(as_text=True)
    return {"submission_key": SUBMISSION_KEY.search(page).group(1), "currency_code": "EUR"}


def confirmed(amount: str, currency: str = "EUR", locale: str = "en") -> str:
    """What the confirmation step carries for an amount a test pledges: its exact minor
    units (empty when the amount does not parse, so the form's own error shows)."""
    try:
        return str(Money.parse(amount, currency, locale).amount)
    except MoneyError:
        return ""


def pledge(
    client, slug, amount="25", card="4242424242424242", email="sup@example.org", key=None, **extra
):
    data = {
        "amount": amount,
        "confirmed_amount": confirmed(amount),
        "card_number": card,
        "email": email,
        "visibility": "anonymous",
        **((key and {"submission_key": key, "currency_code": "EUR"}) or pledge_form(client, slug)),
        **extra,
    }
    return submit(client, f"/c/{slug}/pledge", data)


def campaign_row(app, slug) -> Campaign:
    with app.app_context():
        return db.session.scalar(select(Campaign).where(Campaign.slug == slug))


def pledges(app) -> list[Pledge]:
    with app.app_context():
        return list(db.session.scalars(select(Pledge).order_by(Pledge.id)))

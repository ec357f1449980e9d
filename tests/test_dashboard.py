"""An organizer's dashboard: per campaign, progress and backers, private messages, and
what needs them now (a draft to launch, a suspension, disbursements to approve)."""

from __future__ import annotations

from sqlalchemy import select

from campaigns import services as campaign_services
from campaigns.models import Campaign
from core.extensions import db
from ledger.disbursements import Disbursement
from tests.factories import create_draft, live_campaign, login, pledge, register, submit
from tests.test_disbursements import _funded, _record


def _dashboard(client) -> str:
    page = client.get("/dashboard")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_a_disbursement_to_approve_needs_the_other_member_until_it_is_decided(app):
    slug, _cid, owner, treasurer = _funded(app)
    assert "It holds €" in _dashboard(treasurer)  # a settled balance to pay out
    assert _record(treasurer, slug).status_code == 302
    page = _dashboard(owner)
    assert "1 thing needs you" in page
    assert "1 disbursement waits for your approval" in page
    assert "waits for your approval" not in _dashboard(treasurer)  # never one's own
    with app.app_context():
        item = db.session.scalars(select(Disbursement.id)).one()
    submit(
        owner, f"/c/{slug}/disbursements/{item}/approve", {}, form_page=f"/c/{slug}/disbursements"
    )
    assert "waits for your approval" not in _dashboard(owner)


def test_the_dashboard_counts_private_messages_and_shows_progress(app):
    slug = live_campaign(
        app,
        goal="100",
        **{"budget_lines-0-amount": "100", "budget_lines-1-item": "", "budget_lines-1-amount": ""},
    )
    pledge(app.test_client(), slug, amount="25", private_message="I can print leaflets.")
    pledge(app.test_client(), slug, amount="25", email="b@example.org")
    owner = app.test_client()
    login(owner, "org@example.org")
    page = _dashboard(owner)
    assert "1 private message from backers" in page
    assert "50%" in page and "€50.00 / €100.00" in page
    assert "I can print leaflets." not in page  # read on the committee's backers page
    assert "I can print leaflets." in owner.get(f"/c/{slug}/backers").get_data(as_text=True)


def test_a_draft_and_a_suspension_need_their_organizers(app, client):
    register(client, email="org@example.org", name="Org")
    create_draft(client, title="A draft fund")
    page = _dashboard(client)
    assert "A draft: check it over, then launch it." in page
    with app.app_context():
        draft = db.session.scalars(select(Campaign)).one()
        campaign_services.launch(draft)
        campaign_services.suspend(draft, "Checking who runs it.")
        db.session.commit()
    page = _dashboard(client)
    assert "Suspended by the moderators: Checking who runs it." in page

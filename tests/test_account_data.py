"""A person's own data: changing the account's address (verified by a link to the new
one), closing the account (GDPR art. 17) and downloading everything held (art. 15, 20).
The ledger keeps verifying after a closing, as it does for erased supporters."""

from __future__ import annotations

import json

from sqlalchemy import select

from accounts.models import User
from campaigns.models import Campaign, Organizer
from core.extensions import db
from payments.models import Pledge
from tests.factories import (
    DEFAULT_PASSWORD,
    add_pledges,
    campaign_row,
    link_in,
    live_campaign,
    login,
    mail_to,
    make_campaign,
    past_deadline,
    pledge,
    register,
    run_sweep,
    submit,
)

NEW = "ada.new@example.org"


def _change_email(client, address, password=DEFAULT_PASSWORD):
    return submit(
        client,
        "/account",
        {
            "email-email": address,
            "email-current_password": password,
            "email-submit": "Send a confirmation link",
        },
    )


def _close(client, password=DEFAULT_PASSWORD, confirm="y"):
    data = {"close-current_password": password, "close-submit": "Close my account"}
    if confirm:
        data["close-confirm"] = confirm
    return submit(client, "/account/close", data, form_page="/account")


def _user(app, user_id) -> User:
    with app.app_context():
        return db.session.get_one(User, user_id)


def _user_id(app, email) -> int:
    with app.app_context():
        return db.session.scalars(select(User.id).where(User.email == email)).one()


def test_the_address_changes_only_when_the_link_sent_to_it_is_opened(app, client):
    register(client)
    user_id = _user_id(app, "ada@example.org")
    asked = _change_email(client, NEW)
    assert asked.status_code == 302
    assert _user(app, user_id).email == "ada@example.org"  # nothing yet
    link = link_in(mail_to(app, NEW)[-1], "/account/email/")
    # Anyone holding the link may open it: it proves the new mailbox, not the session.
    opened = app.test_client().get(link)
    assert opened.status_code == 302
    assert _user(app, user_id).email == NEW
    assert "now uses the address ada.new@example.org" in mail_to(app, "ada@example.org")[-1]
    assert login(app.test_client(), NEW).status_code == 302
    assert login(app.test_client(), "ada@example.org").status_code == 401
    # The link works once: the account's address is no longer the one it came from.
    again = app.test_client().get(link, follow_redirects=True)
    assert "used already" in again.get_data(as_text=True)
    assert _user(app, user_id).email == NEW


def test_changing_to_a_taken_address_says_the_same_and_changes_nothing(app, client):
    register(app.test_client(), email="taken@example.org", name="Bea")
    register(client)
    answer = _change_email(client, "taken@example.org")
    assert answer.status_code == 302
    told = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "We have emailed a link to taken@example.org" in told
    [warning] = [m for m in mail_to(app, "taken@example.org") if "move a Counterfund" in m]
    assert "/account/email/" not in warning
    assert _user_id(app, "ada@example.org")


def test_changing_the_address_needs_the_password_and_a_real_address(app, client):
    register(client)
    wrong = _change_email(client, NEW, password="not my password at all")
    assert wrong.status_code == 422
    assert "current password is not correct" in wrong.get_data(as_text=True)
    bad = _change_email(client, "not an address")
    assert bad.status_code == 422
    assert mail_to(app, NEW) == []


def test_a_change_link_for_an_address_taken_meanwhile_is_refused(app, client):
    register(client)
    _change_email(client, NEW)
    link = link_in(mail_to(app, NEW)[-1], "/account/email/")
    register(app.test_client(), email=NEW, name="Quick")
    refused = client.get(link, follow_redirects=True)
    assert "Another account has this address now" in refused.get_data(as_text=True)
    assert _user_id(app, "ada@example.org")


def test_closing_an_account_cancels_open_pledges_erases_names_and_keeps_the_ledger(app, client):
    # A settled campaign the person backed under their name, with a message.
    settled_id = make_campaign(app, goal=10)
    register(client)
    user_id = _user_id(app, "ada@example.org")
    add_pledges(app, settled_id, [("4242424242424242", 20)])
    with app.app_context():
        charged = db.session.scalars(select(Pledge).where(Pledge.campaign_id == settled_id)).one()
        charged.user_id, charged.guest_email = user_id, None
        charged.visibility, charged.public_name = "name", "Ada Lovelace"
        charged.private_message = "my phone is 0123"
        db.session.commit()
        charged_id = charged.id
    past_deadline(app, settled_id)
    run_sweep(app)
    from core import clock

    clock.freeze(None)
    # And a live campaign they back now.
    slug = live_campaign(app)
    assert (
        pledge(client, slug, amount="30", visibility="name", public_name="Ada L.").status_code
        == 302
    )
    assert campaign_row(app, slug).pledged_amount == 3000
    runner = app.test_cli_runner()
    before = app.test_client().get("/api/v1/ledger/checkpoint").get_data(as_text=True)

    closed = _close(client)
    assert closed.status_code == 302, closed.get_data(as_text=True)[:3000]
    with app.app_context():
        pledges = db.session.scalars(select(Pledge).where(Pledge.user_id == user_id)).all()
        states = {p.campaign_id: p.status for p in pledges}
        assert states[settled_id] == "charged"
        assert sorted(states.values()) == ["cancelled", "charged"]
        for p in pledges:
            assert (p.public_name, p.private_message, p.public_message, p.card_last4) == (
                "",
                "",
                "",
                "",
            )
            assert p.visibility == "anonymous"
        assert db.session.get_one(Pledge, charged_id).charged_amount == 2000
    assert campaign_row(app, slug).pledged_amount == 0
    user = _user(app, user_id)
    assert user.closed_at is not None and "ada" not in user.email and user.display_name != "Ada"
    # Logged out, the cookie useless, the password useless, the address free again.
    assert client.get("/account").status_code == 302
    assert login(app.test_client()).status_code == 401
    assert "is closed" in mail_to(app, "ada@example.org")[-1]
    register(app.test_client(), name="Ada again")
    # The public record never held any of it: same checkpoint, still verifying.
    assert app.test_client().get("/api/v1/ledger/checkpoint").get_data(as_text=True) == before
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
    page = app.test_client().get(f"/c/{slug}").get_data(as_text=True)
    assert "Ada L." not in page


def test_closing_is_refused_with_the_reason_while_the_person_alone_owns_a_live_campaign(app):
    owner = app.test_client()
    slug = live_campaign(app)  # registers org@example.org as its owner
    login(owner, "org@example.org")
    refused = _close(owner)
    assert refused.status_code == 422
    assert "which has not finished" in refused.get_data(as_text=True)
    user_id = _user_id(app, "org@example.org")
    assert _user(app, user_id).closed_at is None
    with app.app_context():
        owners = db.session.scalars(
            select(Organizer.user_id).join(Campaign).where(Campaign.slug == slug)
        ).all()
    assert owners == [user_id]


def test_closing_needs_the_password_and_the_tick(app, client):
    register(client)
    assert _close(client, password="wrong password entirely").status_code == 422
    unticked = _close(client, confirm="")
    assert unticked.status_code == 422 and "Tick the box" in unticked.get_data(as_text=True)
    assert _user(app, _user_id(app, "ada@example.org")).closed_at is None


def test_closing_waits_for_a_pledge_settlement_is_retrying(app, client):
    campaign_id = make_campaign(app, goal=10, model="flexible")
    register(client)
    user_id = _user_id(app, "ada@example.org")
    [pledge_id] = add_pledges(app, campaign_id, [("4000000000000341", 20)])
    with app.app_context():
        row = db.session.get_one(Pledge, pledge_id)
        row.user_id, row.guest_email = user_id, None
        db.session.commit()
    past_deadline(app, campaign_id)
    run_sweep(app)
    with app.app_context():
        assert db.session.get_one(Pledge, pledge_id).status == "failed"
    refused = _close(client)
    assert refused.status_code == 422
    assert "being charged or retried" in refused.get_data(as_text=True)
    assert _user(app, user_id).closed_at is None


def test_the_data_export_holds_everything_about_the_person_and_nobody_else(app, client):
    slug = live_campaign(app)
    register(client)
    pledge(
        client,
        slug,
        amount="12",
        visibility="pseudonym",
        public_name="night shift",
        private_message="call me on Sundays",
    )
    pledge(app.test_client(), slug, amount="9", email="someone.else@example.org")
    assert app.test_client().get("/account/export.json").status_code == 302  # login first
    download = client.get("/account/export.json")
    assert download.status_code == 200
    assert download.headers["Cache-Control"] == "no-store"
    assert "attachment" in download.headers["Content-Disposition"]
    data = json.loads(download.get_data(as_text=True))
    assert data["account"]["email"] == "ada@example.org"
    assert data["account"]["display_name"] == "Ada"
    [mine] = data["pledges"]
    assert (mine["campaign"], mine["amount"], mine["currency"]) == (slug, 1200, "EUR")
    assert mine["public_name"] == "night shift"
    assert mine["private_message_to_organizers"] == "call me on Sundays"
    assert [e["event"] for e in mine["history"]][:2] == ["created", "activated"]
    assert "someone.else" not in download.get_data(as_text=True)
    assert data["committees"] == []
    organizer = app.test_client()
    login(organizer, "org@example.org")
    theirs = json.loads(organizer.get("/account/export.json").get_data(as_text=True))
    assert [c["campaign"] for c in theirs["committees"]] == [slug]
    assert theirs["committees"][0]["role"] == "owner"

"""Who is told what by email: backers get the organizers' updates (when the organizers
choose) and one reminder before an all-or-nothing deadline, each with a one-click
unsubscribe; committees hear of funding, failure, settlement, reports, suspensions and
disbursements waiting for them; supporters get a confirmation of each change they make.
Each in the recipient's language, through the outbox."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.models import Campaign, CampaignUpdate
from core import clock
from core.extensions import db
from tests.factories import (
    create_draft,
    csrf_token,
    launched,
    link_in,
    login,
    mail_to,
    past_deadline,
    pledge,
    register,
    run_sweep,
    submit,
)

ORG = "org@example.org"


def _campaign_with_backers(
    app, backers=("one@example.org", "two@example.org"), goal="5000.50", **form
):
    organizer = app.test_client()
    register(organizer, email=ORG, name="Bakers' Committee")
    budget = {"budget_lines-0-amount": goal, "budget_lines-1-item": "", "budget_lines-1-amount": ""}
    response = create_draft(organizer, goal=goal, **budget, **form)
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    slug = launched(organizer, response.headers["Location"].rsplit("/", 1)[-1])
    for n, email in enumerate(backers):
        supporter = app.test_client()
        if n % 2:
            supporter.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"
        assert pledge(supporter, slug, amount="20", email=email).status_code == 302
    return organizer, slug


def _post_update(organizer, slug, title, email_backers=True):
    data = {"title": title, "body": "The picket *holds*.", "submit": "Post update"}
    if email_backers:
        data["email_backers"] = "y"
    response = submit(organizer, f"/c/{slug}/updates/new", data)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]


def _mails(app, address, containing):
    return [m for m in mail_to(app, address) if containing in m]


def test_backers_get_an_update_the_organizers_chose_to_email_once_each(app):
    organizer, slug = _campaign_with_backers(
        app, backers=("one@example.org", "two@example.org", "one@example.org")
    )
    _post_update(organizer, slug, "Day five on the picket")
    [mail] = _mails(app, "one@example.org", "Day five on the picket")
    assert "The picket *holds*." in mail
    assert re.search(r"^List-Unsubscribe: <http://[^>]+/unsubscribe/\S+>$", mail, re.M)
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in mail
    assert "/unsubscribe/" in mail.split("\n\n", 1)[1]  # said in the text too
    assert len(_mails(app, "two@example.org", "Day five on the picket")) == 1
    assert _mails(app, ORG, "Day five on the picket") == []  # not a backer
    _post_update(organizer, slug, "Quiet day", email_backers=False)
    assert _mails(app, "one@example.org", "Quiet day") == []
    # A second run of the job (RQ may run one twice) sends nothing more.
    from payments.notifications import email_update

    with app.app_context():
        update_id = db.session.scalars(
            select(CampaignUpdate.id).where(CampaignUpdate.title == "Day five on the picket")
        ).one()
        assert email_update(update_id) == 0
    assert len(_mails(app, "one@example.org", "Day five on the picket")) == 1


def test_a_backer_who_pledged_in_german_reads_the_update_email_in_german(app):
    organizer, slug = _campaign_with_backers(app)
    _post_update(organizer, slug, "Tag fünf")
    [mail] = _mails(app, "two@example.org", "Tag fünf")
    assert "Ein Update von" in mail or "Neuigkeiten" in mail


def test_one_click_unsubscribe_stops_updates_for_that_backer_only(app):
    organizer, slug = _campaign_with_backers(app)
    _post_update(organizer, slug, "First news")
    [mail] = _mails(app, "one@example.org", "First news")
    link = link_in(mail.split("\n\n", 1)[1], "/unsubscribe/")  # the text, not the header
    visitor = app.test_client()
    # Opening the link (a mail scanner does) changes nothing; it asks.
    page = visitor.get(link)
    assert page.status_code == 200 and "Stop receiving" in page.get_data(as_text=True)
    _post_update(organizer, slug, "Second news")
    assert len(_mails(app, "one@example.org", "Second news")) == 1
    # The mail client's own one-click POST (RFC 8058): no session, no CSRF token.
    done = visitor.post(link, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "no longer receive" in done.get_data(as_text=True)
    assert visitor.post(link).status_code == 200  # twice is fine
    _post_update(organizer, slug, "Third news")
    assert _mails(app, "one@example.org", "Third news") == []
    assert len(_mails(app, "two@example.org", "Third news")) == 1
    assert visitor.post("/unsubscribe/forged-token").status_code == 404
    assert visitor.get(link[:-3] + "abc").status_code == 404


def _past_its_deadline(app, slug) -> None:
    """The deadline passes; two sweeps decide, then charge or release, then close."""
    with app.app_context():
        campaign_id = db.session.scalars(select(Campaign.id).where(Campaign.slug == slug)).one()
    past_deadline(app, campaign_id)
    run_sweep(app)
    run_sweep(app)


def test_the_committee_hears_when_the_campaign_is_funded_and_settled(app):
    _organizer, slug = _campaign_with_backers(app, goal="30")
    _past_its_deadline(app, slug)
    [funded] = _mails(app, ORG, "is funded")
    assert "€40.00" in funded
    [settled] = _mails(app, ORG, "is settled")
    assert "was collected" in settled


def test_the_committee_hears_when_an_all_or_nothing_campaign_fails(app):
    _organizer, slug = _campaign_with_backers(app, goal="5000")
    _past_its_deadline(app, slug)
    [failed] = _mails(app, ORG, "did not reach its goal")
    assert "nobody is charged" in failed
    assert len(_mails(app, ORG, "the saved cards were detached")) == 1
    assert _mails(app, ORG, "is funded") == []


def test_the_committee_hears_of_reports_and_of_a_suspension_with_its_reason(app):
    _organizer, slug = _campaign_with_backers(app, backers=())
    reporter = app.test_client()
    response = submit(reporter, f"/c/{slug}/report", {"reason": "impersonating a union"})
    assert response.status_code == 302
    [reported] = _mails(app, ORG, "was reported")
    assert "impersonating" not in reported  # reports are anonymous; their text is not sent
    moderator = app.test_client()
    register(moderator, email="mod@example.org", name="Mod")
    app.test_cli_runner().invoke(args=["users", "set-moderator", "mod@example.org"])
    confirm = moderator.get(f"/moderation/c/{slug}/suspend")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.get_data(as_text=True)
    refused = submit(moderator, f"/moderation/c/{slug}/suspend", {"reason": "  "})
    assert refused.status_code == 422 and "Say why" in refused.get_data(as_text=True)
    with app.app_context():
        assert (
            db.session.scalars(select(Campaign.status).where(Campaign.slug == slug)).one() == "live"
        )
    done = submit(
        moderator, f"/moderation/c/{slug}/suspend", {"reason": "The union says it is not theirs."}
    )
    assert done.status_code == 302
    [suspended] = _mails(app, ORG, "is suspended")
    assert "The union says it is not theirs." in suspended


def test_a_disbursement_waiting_for_approval_is_announced_to_the_other_members(app):
    from tests.test_disbursements import _funded, _record

    slug, _cid, _owner, treasurer = _funded(app)
    assert _record(treasurer, slug).status_code == 302
    [waiting] = _mails(app, ORG, "waits for your approval")
    assert "Print Cooperative" in waiting and "€40.00" in waiting
    assert f"/c/{slug}/disbursements" in waiting
    assert _mails(app, "tre@example.org", "waits for your approval") == []


def test_supporters_are_told_of_each_change_they_make(app):
    _organizer, slug = _campaign_with_backers(app, backers=())
    supporter = app.test_client()
    pledge(supporter, slug, amount="25", email="sup@example.org")
    manage = link_in(mail_to(app, "sup@example.org")[-1], "/pledge/")
    changed = submit(
        supporter,
        manage + "/amount",
        {"amount": "40", "confirmed_amount": "4000"},
        form_page=manage,
    )
    assert changed.status_code == 302, changed.get_data(as_text=True)[:2000]
    [told] = _mails(app, "sup@example.org", "is now €40.00")
    assert "it was €25.00" in told
    confirm = supporter.get(manage + "/cancel")
    assert confirm.status_code == 200 and "Yes, cancel my pledge" in confirm.get_data(as_text=True)
    token = csrf_token(supporter, manage + "/cancel")
    cancelled = supporter.post(manage + "/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 302
    [told] = _mails(app, "sup@example.org", "is cancelled")
    assert "nothing will be charged" in told
    # The same form sent again from another tab tells nobody twice.
    assert supporter.post(manage + "/cancel", data={"csrf_token": token}).status_code == 302
    assert len(_mails(app, "sup@example.org", "is cancelled")) == 1


def test_backers_of_a_campaign_close_to_its_goal_get_one_reminder_before_the_deadline(app):
    _organizer, _slug = _campaign_with_backers(
        app,
        backers=("one@example.org", "two@example.org", "three@example.org"),
        goal="100",
        deadline=(clock.utcnow() + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"),
    )
    run_sweep(app)  # ten days before: too early
    assert _mails(app, "one@example.org", "close to its goal") == []
    clock.freeze(clock.utcnow() + timedelta(days=8))
    run_sweep(app)
    run_sweep(app)
    [reminder] = _mails(app, "one@example.org", "close to its goal")
    assert "€60.00" in reminder and "€100.00" in reminder
    assert "List-Unsubscribe:" in reminder
    assert len(_mails(app, "three@example.org", "close to its goal")) == 1


@pytest.mark.parametrize("goal", ["1000", "15"])  # 2 % of its goal; funded already
def test_no_reminder_for_a_campaign_far_from_its_goal_or_funded_already(app, goal):
    _campaign_with_backers(
        app,
        backers=("far@example.org",),
        goal=goal,
        deadline=(clock.utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
    )
    run_sweep(app)
    assert len(mail_to(app, "far@example.org")) == 1  # the pledge's confirmation only
    assert _mails(app, "far@example.org", "close to its goal") == []


def test_a_committee_member_who_logged_in_in_german_is_told_in_german(app):
    _organizer, slug = _campaign_with_backers(app, goal="5000")
    german = app.test_client()
    german.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"
    login(german, ORG)
    _past_its_deadline(app, slug)
    [failed] = _mails(app, ORG, "niemandem etwas abgebucht")
    assert "Hallo Bakers' Committee" in failed

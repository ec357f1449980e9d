"""Emails are templates, written in the language the supporter pledged in, even when
a job sends them long after the request; each has a text and an HTML part."""

from __future__ import annotations

from email import message_from_bytes, policy

from flask_babel import force_locale, gettext
from sqlalchemy import select

from core.extensions import db
from payments.models import Pledge
from tests.factories import live_campaign, mail_to, past_deadline, pledge, run_sweep, submit


def _subject(app, locale: str, msgid: str, **params) -> str:
    with app.app_context(), force_locale(locale):
        return gettext(msgid, **params)


def test_a_german_supporter_gets_every_email_in_german_with_an_html_part(app):
    slug = live_campaign(app, goal="10", budget_note="The rest comes from the union.")
    supporter = app.test_client()
    submit(supporter, "/language", {"locale": "de", "next": "/"}, form_page="/login")
    response = pledge(supporter, slug, amount="25")
    assert response.status_code == 302
    with app.app_context():
        stored = db.session.scalar(select(Pledge))
        assert stored.locale == "de"
        campaign_id, title = stored.campaign_id, stored.campaign.title

    # Settlement runs in a job, with no visitor and so no request language.
    past_deadline(app, campaign_id)
    run_sweep(app)

    sent = [
        message_from_bytes(raw.encode(), policy=policy.default)
        for raw in mail_to(app, "sup@example.org")
    ]
    subjects = [m["Subject"] for m in sent]
    assert subjects == [
        _subject(app, "de", "Your pledge to %(t)s", t=title),
        _subject(app, "de", "Receipt: your pledge to %(t)s", t=title),
    ]
    assert subjects[1] != _subject(app, "en", "Receipt: your pledge to %(t)s", t=title)
    receipt = sent[1]
    text = receipt.get_body(("plain",)).get_content()
    html = receipt.get_body(("html",)).get_content()
    assert "25,00" in text and "€" in text  # the amount, formatted the German way
    link = next(word for word in text.split() if "/pledge/" in word)
    assert f'<a href="{link}">' in html
    assert 'lang="de"' in html


def test_only_our_own_links_are_clickable_in_the_html_part(app):
    """A campaign title is the organizer's text: a URL in it stays text, never a link
    in our name; markup in it is escaped."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from core import mail
    from core.money import Money
    from core.urls import public_request_context

    title = '<b>Rent</b> fund: see http://evil.example/pay & "more"'
    with app.app_context(), public_request_context():
        ours = app.config["PUBLIC_URL"] + "/pledge/abc"
        email = mail.compose(
            "pledges/confirmation",
            "en",
            pledge=SimpleNamespace(money=Money(2500, "EUR")),
            campaign=SimpleNamespace(title=title, deadline=datetime.now(UTC)),
            link=ours,
        )
    assert f'<a href="{ours}">' in email.html
    assert "evil.example/pay" in email.html and 'href="http://evil' not in email.html
    assert "<b>Rent</b>" not in email.html and "&lt;b&gt;Rent&lt;/b&gt;" in email.html


def test_the_html_part_names_its_language_as_browsers_read_it(app):
    """pt_BR is the catalog's name; an HTML lang attribute says pt-BR (as base.html does)."""
    from core import mail

    with app.test_request_context():
        email = mail.compose("accounts/login_link", "pt_BR", name="Ana", link="x", minutes=15)
    assert '<html lang="pt-BR">' in email.html


def test_committee_emails_write_amounts_the_way_their_reader_reads_them(app):
    """A refund made at the processor and a disputed charge reach a German treasurer
    as "10,00 €", never "€10.00"."""
    from core import mail
    from core.money import Money
    from core.urls import public_request_context

    context = {"name": "Kasse", "title": "Streikkasse", "status": "needs_response"}
    with app.app_context(), public_request_context():
        link = app.config["PUBLIC_URL"] + "/c/streikkasse"
        for template in ("campaigns/refunded_elsewhere", "campaigns/disputed"):
            email = mail.compose(template, "de", amount=Money(1000, "EUR"), link=link, **context)
            assert "10,00\xa0€" in email.text, template
            assert "€10.00" not in email.text and "10.00" not in email.text, template

"""Amounts typed by supporters, organizers and treasurers in every interface language,
through the real forms: read exactly, confirmed before they are saved, or refused."""

from __future__ import annotations

import re

import pytest

from tests.factories import (
    campaign_row,
    create_draft,
    live_campaign,
    pledge_form,
    pledges,
    register,
    submit,
)

GERMAN = {"Accept-Language": "de"}
# Amounts quoted inside messages are written the way the visitor reads amounts: a
# German speaker told "€1.00" or "€100,000.00" reads a malformed number or one a
# thousand times off.
ENGLISH_AMOUNT = re.compile(r"€\d[\d,]*\.\d\d")


def _organizer(app):
    organizer = app.test_client()
    register(organizer, email="org@example.org", name="Organizers")
    return organizer


def _pledge_in(client, slug, amount, locale_headers, confirmed=None):
    data = {
        "amount": amount,
        "card_number": "4242424242424242",
        "email": "sup@example.org",
        "visibility": "anonymous",
        **pledge_form(client, slug),
    }
    if confirmed is not None:
        data["confirmed_amount"] = confirmed
    return submit(client, f"/c/{slug}/pledge", data, headers=locale_headers)


@pytest.mark.parametrize(
    ("locale", "typed", "minor", "shown"),
    [
        ("de", "12,50", 1250, "12,50\xa0€"),
        ("es", "12,50", 1250, "12,50\xa0€"),
        ("pt-BR", "1.000,50", 100_050, "€\xa01.000,50"),
        ("de", "1.000", 100_000, "1.000,00\xa0€"),
        ("en", "1,000.50", 100_050, "€1,000.50"),
    ],
)
def test_a_pledge_typed_in_the_visitors_locale_is_confirmed_then_saved_exactly(
    app, client, locale, typed, minor, shown
):
    slug = live_campaign(app)
    headers = {"Accept-Language": locale}
    first = _pledge_in(client, slug, typed, headers)
    # Nothing is saved before the supporter has seen the exact amount, in their locale.
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert 'id="confirm-amount"' in page
    assert shown in page
    assert pledges(app) == []
    assert f'name="confirmed_amount" type="hidden" value="{minor}"' in page
    second = _pledge_in(client, slug, typed, headers, confirmed=str(minor))
    assert second.status_code == 302
    [made] = pledges(app)
    assert (made.amount, made.currency, made.status) == (minor, "EUR", "active")
    assert campaign_row(app, slug).pledged_amount == minor


def test_a_confirmation_binds_the_amount_it_showed(app, client):
    """A confirmation for one amount never saves another: changing the amount after the
    confirmation step asks again."""
    slug = live_campaign(app)
    response = _pledge_in(client, slug, "12,50", GERMAN, confirmed="1250000")
    assert response.status_code == 200
    assert 'id="confirm-amount"' in response.get_data(as_text=True)
    assert pledges(app) == []


@pytest.mark.parametrize("typed", ["12,50", "1.000,50", "1e999999", "12,5,0", "\u0663"])
def test_english_visitors_get_a_clear_refusal_for_foreign_or_malformed_amounts(app, client, typed):
    slug = live_campaign(app)
    response = _pledge_in(client, slug, typed, {"Accept-Language": "en"})
    assert response.status_code == 422
    assert pledges(app) == []
    assert campaign_row(app, slug).pledged_amount == 0


def test_goals_and_budgets_are_read_in_german(app):
    organizer = _organizer(app)
    response = create_draft(
        organizer,
        goal="5.000,50",
        **{"budget_lines-0-amount": "4.000", "budget_lines-1-amount": "1.000,50"},
        headers=GERMAN,
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    slug = response.headers["Location"].rsplit("/", 1)[-1]
    assert campaign_row(app, slug).goal_amount == 500_050
    # The edit form gives the goal back as a German speaker types it.
    edit = organizer.get(f"/c/{slug}/edit", headers=GERMAN).get_data(as_text=True)
    assert 'value="5000,50"' in edit
    # The launch page quotes the goal and the budget as a German speaker reads them.
    terms = organizer.get(f"/c/{slug}/launch", headers=GERMAN).get_data(as_text=True)
    assert terms.count("5.000,50\xa0€") >= 2
    assert not ENGLISH_AMOUNT.findall(terms)


def test_a_withdrawn_currency_is_not_offered_and_refused(app):
    organizer = _organizer(app)
    form = organizer.get("/campaigns/new", headers=GERMAN).get_data(as_text=True)
    assert "EUR — Euro" in form
    assert "DEM" not in form
    response = create_draft(organizer, currency="DEM")
    assert response.status_code == 422
    assert campaign_row(app, "strike-fund-for-the-bakery-workers") is None


def test_a_pledges_limits_are_quoted_in_the_visitors_locale(app, client):
    slug = live_campaign(app)
    too_small = _pledge_in(client, slug, "0,50", GERMAN)
    assert too_small.status_code == 422
    page = too_small.get_data(as_text=True)
    assert "1,00\xa0€" in page
    assert not ENGLISH_AMOUNT.findall(page)
    too_large = _pledge_in(client, slug, "100.000,01", GERMAN)
    assert too_large.status_code == 422
    page = too_large.get_data(as_text=True)
    assert "100.000,00\xa0€" in page
    assert not ENGLISH_AMOUNT.findall(page)
    assert pledges(app) == []


def test_an_organizers_goal_and_budget_problems_are_quoted_in_their_locale(app):
    organizer = _organizer(app)
    too_large = create_draft(
        organizer,
        goal="20.000.000",
        **{"budget_lines-0-amount": "10.000.000", "budget_lines-1-amount": "10.000.000"},
        headers=GERMAN,
    )
    assert too_large.status_code == 422
    page = too_large.get_data(as_text=True)
    assert "10.000.000,00\xa0€" in page
    assert not ENGLISH_AMOUNT.findall(page)
    unexplained = create_draft(
        organizer,
        goal="5.000,50",
        budget_note="",
        **{"budget_lines-0-amount": "4.000", "budget_lines-1-amount": "1.000"},
        headers=GERMAN,
    )
    assert unexplained.status_code == 422
    page = unexplained.get_data(as_text=True)
    assert "5.000,00\xa0€" in page and "5.000,50\xa0€" in page
    assert not ENGLISH_AMOUNT.findall(page)

from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_babel import force_locale, gettext
from sqlalchemy import select

from core import clock
from core.extensions import db
from payments.models import PledgeEvent
from tests.factories import (
    campaign_row,
    live_campaign,
    login,
    past_deadline,
    pledge,
    pledge_form,
    pledges,
    register,
    run_sweep,
    submit,
)


def _errors(response) -> str:
    return " ".join(re.findall(r'class="error"[^>]*>([^<]*)<', response.get_data(as_text=True)))


def _outbox(app) -> list[str]:
    """The pledge emails sent (account confirmations of the tests' organizers aside)."""
    folder = Path(app.config["OUTBOX_FOLDER"])
    if not folder.exists():
        return []
    mails = [p.read_text() for p in sorted(folder.glob("*.eml"))]
    return [m for m in mails if "/register/confirm/" not in m]


def _manage_link(app) -> str:
    mail = _outbox(app)[-1]
    return re.search(r"http://127\.0\.0\.1:5000(/pledge/\S+)", mail).group(1)


def test_guest_pledge_with_4242_becomes_active_and_counts(app, client):
    slug = live_campaign(app)
    page = client.get(f"/c/{slug}/pledge").get_data(as_text=True)
    assert "Demo payments." in page and "no real money" in page
    response = pledge(
        client, slug, amount="25.50", visibility="pseudonym", public_name="Night Shift Baker"
    )
    assert response.status_code == 302, _errors(response)
    [made] = pledges(app)
    assert (made.status, made.amount, made.currency) == ("active", 2550, "EUR")
    assert made.card_last4 == "4242"
    campaign = campaign_row(app, slug)
    assert (campaign.pledged_amount, campaign.backer_count) == (2550, 1)
    api = client.get(f"/api/v1/campaigns/{slug}").get_json()
    assert api["pledged"] == {"amount": 2550, "currency": "EUR"} and api["backers"] == 1
    detail = app.test_client().get(f"/c/{slug}").get_data(as_text=True)
    assert "€25.50" in detail and "1 backer" in detail
    assert "Night Shift Baker" in detail and "sup@example.org" not in detail
    with app.app_context():
        kinds = [e.kind for e in db.session.scalars(select(PledgeEvent).order_by(PledgeEvent.id))]
    assert kinds == ["created", "activated"]
    # The confirmation email carries a working manage link; nothing personal in the URL.
    link = _manage_link(app)
    assert "sup@example.org" not in link and "sup%40" not in link
    manage = app.test_client().get(link)
    assert manage.status_code == 200
    assert "€25.50" in manage.get_data(as_text=True)


def test_declined_card_changes_nothing(app, client):
    slug = live_campaign(app)
    response = pledge(client, slug, card="4000000000000002")
    assert response.status_code == 422
    assert "declined" in _errors(response)
    assert pledges(app) == []
    campaign = campaign_row(app, slug)
    assert (campaign.pledged_amount, campaign.backer_count) == (0, 0)
    assert _outbox(app) == []
    provider = app.extensions["payment_backend"].provider
    assert provider.count_calls("confirm_setup") == 1


def test_invalid_card_number_is_refused(app, client):
    slug = live_campaign(app)
    response = pledge(client, slug, card="4242424242424241")
    assert response.status_code == 422
    assert "incorrect" in _errors(response)
    assert pledges(app) == []


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "smallest pledge"),
        ("-5", "smallest pledge"),
        ("0.99", "smallest pledge"),
        ("10.001", "at most 2 decimal places"),
        ("ten", "not a number"),
        ("", "This field is required"),
        ("100001", "largest pledge"),
        ("1000000000", "largest pledge"),
        # Exponents, other scripts' digits and misplaced separators are not amounts.
        ("1e9", "not a number"),
        ("1e999999", "not a number"),
        ("\u0663", "not a number"),
        ("12,50", "ambiguous"),
        ("1.000,50", "ambiguous"),
        ("12,5,0", "ambiguous"),
        ("1.2.3", "not a number"),
    ],
)
def test_bad_amounts_change_nothing(app, client, amount, message):
    slug = live_campaign(app)
    response = pledge(client, slug, amount=amount)
    assert response.status_code == 422
    assert message in _errors(response) + response.get_data(as_text=True)
    assert pledges(app) == []
    assert campaign_row(app, slug).pledged_amount == 0


def test_other_currency_is_refused(app, client):
    slug = live_campaign(app)
    data = {
        "amount": "25",
        "card_number": "4242424242424242",
        "email": "s@example.org",
        "visibility": "anonymous",
        **pledge_form(client, slug),
        "currency_code": "USD",
    }
    response = submit(client, f"/c/{slug}/pledge", data)
    assert response.status_code == 422
    assert "collects EUR" in _errors(response)
    assert pledges(app) == []


@pytest.mark.parametrize(
    ("language", "advice"),
    [("en", "reload the page"), ("de", "Lade die Seite neu")],
)
def test_a_form_whose_hidden_key_was_changed_says_to_reload_it(app, client, language, advice):
    """The submission key is hidden: a page that changed it (or a forged post) cannot
    be told to correct a highlighted field, as none is shown. It is told to reload the
    page, in its language, and nothing is stored."""
    slug = live_campaign(app)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    response = pledge(client, slug, key="short")
    assert response.status_code == 422
    alert = re.search(
        r'class="form-errors" role="alert">(.*?)</div>', response.get_data(as_text=True), re.S
    ).group(1)
    assert advice in alert
    assert "highlighted" not in alert and "markierten" not in alert  # no field is
    assert pledges(app) == []


@pytest.mark.parametrize(
    ("language", "message"), [("en", "Not a valid choice."), ("de", "Keine gültige Auswahl.")]
)
def test_a_visibility_that_is_not_offered_is_shown_as_the_fields_error(
    app, client, language, message
):
    """The visibility radios are drawn by hand: their error (a changed or forged form)
    must show beside them, in the visitor's language, not only "correct the highlighted
    fields" with nothing highlighted."""
    slug = live_campaign(app)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    response = pledge(client, slug, visibility="everyone")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    fieldset = re.search(r'<fieldset class="choices-error">(.*?)</fieldset>', page, re.S)
    assert fieldset is not None, page
    assert f'<p class="error" id="visibility-error" role="alert">{message}</p>' in fieldset[1]
    assert fieldset[1].count('aria-describedby="visibility-error"') == 3
    assert pledges(app) == []


def test_guest_needs_an_email(app, client):
    slug = live_campaign(app)
    response = pledge(client, slug, email="")
    assert response.status_code == 422
    assert "email address" in _errors(response)
    response = pledge(client, slug, email="not-an-email")
    assert response.status_code == 422
    assert pledges(app) == []


def test_named_visibility_needs_a_name(app, client):
    slug = live_campaign(app)
    response = pledge(client, slug, visibility="name", public_name="")
    assert response.status_code == 422
    assert pledges(app) == []


def test_double_submission_makes_one_pledge(app, client):
    slug = live_campaign(app)
    key = pledge_form(client, slug)["submission_key"]
    first = pledge(client, slug, key=key)
    second = pledge(client, slug, key=key)
    assert first.status_code == second.status_code == 302
    # The same pledge (links are signed with a timestamp, so compare their payload).
    assert first.headers["Location"].split(".")[0] == second.headers["Location"].split(".")[0]
    assert len(pledges(app)) == 1
    assert campaign_row(app, slug).backer_count == 1


@pytest.mark.parametrize("state", ["draft", "ended", "cancelled", "suspended"])
def test_pledging_to_a_campaign_that_is_not_live_is_refused(app, client, state):
    slug = live_campaign(app)
    with app.app_context():
        campaign = campaign_row(app, slug)
        if state == "ended":
            clock.freeze(campaign.deadline + timedelta(seconds=1))
        else:
            db.session.execute(
                sa.text("UPDATE campaigns SET status = :s WHERE slug = :slug"),
                {"s": state, "slug": slug},
            )
            db.session.commit()
    response = client.get(f"/c/{slug}/pledge")
    assert response.status_code == (404 if state == "draft" else 409)
    data = {
        "amount": "25",
        "card_number": "4242424242424242",
        "email": "s@example.org",
        "visibility": "anonymous",
        "submission_key": "k" * 24,
        "currency_code": "EUR",
    }
    response = submit(client, f"/c/{slug}/pledge", data, form_page="/login")
    assert response.status_code in (404, 409)
    assert pledges(app) == []


def test_account_pledges_are_listed_and_one_per_campaign(app, client):
    slug = live_campaign(app)
    register(client, email="sup@example.org", name="Supporter")
    response = pledge(client, slug, email="", visibility="name", public_name="Supporter")
    assert response.status_code == 302, _errors(response)
    mine = client.get("/pledges").get_data(as_text=True)
    assert "Strike fund for the bakery workers" in mine and "Active" in mine
    again = pledge(client, slug, email="")
    assert again.status_code == 422
    assert "already back this campaign" in again.get_data(as_text=True)
    assert len(pledges(app)) == 1


def test_another_persons_pledge_is_not_found(app, client):
    slug = live_campaign(app)
    register(client, email="a@example.org", name="A")
    pledge(client, slug, email="")
    [made] = pledges(app)
    other = app.test_client()
    register(other, email="b@example.org", name="B")
    assert other.get(f"/pledge/{made.public_id}").status_code == 404
    response = submit(other, f"/pledge/{made.public_id}/cancel", {}, form_page="/pledges")
    assert response.status_code == 404
    assert pledges(app)[0].status == "active"
    assert app.test_client().get(f"/pledge/{made.public_id}").status_code == 302  # to login


def test_change_amount_and_cancel_keep_totals_right(app, client):
    slug = live_campaign(app)
    pledge(client, slug, amount="40")
    pledge(app.test_client(), slug, amount="10", email="other@example.org")
    link = _outbox(app)[0] and re.search(
        r"http://127\.0\.0\.1:5000(/pledge/\S+)", _outbox(app)[0]
    ).group(1)
    guest = app.test_client()
    response = submit(
        guest, link + "/amount", {"amount": "55", "confirmed_amount": "5500"}, form_page=link
    )
    assert response.status_code == 302
    assert (campaign_row(app, slug).pledged_amount, campaign_row(app, slug).backer_count) == (
        6500,
        2,
    )
    response = submit(guest, link + "/amount", {"amount": "0"}, form_page=link)
    assert response.status_code == 422
    response = submit(guest, link + "/cancel", {}, form_page=link)
    assert response.status_code == 302
    campaign = campaign_row(app, slug)
    assert (campaign.pledged_amount, campaign.backer_count) == (1000, 1)
    statuses = sorted(p.status for p in pledges(app))
    assert statuses == ["active", "cancelled"]
    # Cancelling released the card at the provider.
    cancelled = next(p for p in pledges(app) if p.status == "cancelled")
    provider = app.extensions["payment_backend"].provider
    assert provider.is_detached(cancelled.provider_payment_method_id)
    # ...and pledging again works.
    assert pledge(guest, slug, amount="5").status_code == 302
    assert campaign_row(app, slug).backer_count == 2


def test_tampered_and_expired_links(make_app):
    app = make_app(PLEDGE_LINK_MAX_AGE=3600)
    client = app.test_client()
    slug = live_campaign(app)
    pledge(client, slug)
    link = _manage_link(app)
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    response = app.test_client().get(tampered)
    assert response.status_code == 404
    assert "not valid" in response.get_data(as_text=True)
    response = submit(app.test_client(), tampered + "/cancel", {}, form_page="/pledges/links")
    assert response.status_code == 404
    clock.freeze(clock.utcnow() + timedelta(hours=2))
    response = app.test_client().get(link)
    assert response.status_code == 410
    assert "expired" in response.get_data(as_text=True)
    assert pledges(app)[0].status == "active"


def test_lost_links_are_resent_without_revealing_anything(app, client):
    slug = live_campaign(app)
    pledge(client, slug, email="sup@example.org")
    before = len(_outbox(app))
    response = submit(app.test_client(), "/pledges/links", {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert len(_outbox(app)) == before
    response = submit(app.test_client(), "/pledges/links", {"email": "SUP@example.org"})
    assert response.status_code == 302
    assert len(_outbox(app)) == before + 1
    assert "/pledge/" in _outbox(app)[-1]


def test_replacing_the_card_releases_the_old_one(app, client):
    slug = live_campaign(app)
    pledge(client, slug)
    link = _manage_link(app)
    guest = app.test_client()
    old = pledges(app)[0].provider_payment_method_id
    assert guest.get(link + "/card").status_code == 200
    response = submit(
        guest, link + "/card", {"card_number": "4000000000000002"}, form_page=link + "/card"
    )
    assert response.status_code == 422 and "declined" in _errors(response)
    response = submit(
        guest, link + "/card", {"card_number": "5555555555554444"}, form_page=link + "/card"
    )
    assert response.status_code == 302
    new = pledges(app)[0]
    assert new.provider_payment_method_id != old and new.card_last4 == "4444"
    provider = app.extensions["payment_backend"].provider
    assert provider.is_detached(old) and not provider.is_detached(new.provider_payment_method_id)


def _funded_campaign_near_deadline(app, client):
    slug = live_campaign(
        app,
        goal="100",
        **{"budget_lines-0-amount": "100", "budget_lines-1-item": "", "budget_lines-1-amount": ""},
    )
    pledge(client, slug, amount="80")
    pledge(app.test_client(), slug, amount="30", email="two@example.org")
    assert campaign_row(app, slug).pledged_amount == 11000
    clock.freeze(campaign_row(app, slug).deadline - timedelta(hours=3))
    return slug, _manage_link(app)


def test_last_day_change_that_unfunds_is_refused(app, client):
    slug, link = _funded_campaign_near_deadline(app, client)
    guest = app.test_client()
    response = submit(
        guest, link + "/amount", {"amount": "5", "confirmed_amount": "500"}, form_page=link
    )
    assert response.status_code == 422
    assert "last day before the deadline" in response.get_data(as_text=True)
    response = submit(guest, link + "/cancel", {}, form_page=link)
    assert "last day before the deadline" in guest.get(link).get_data(as_text=True)
    assert campaign_row(app, slug).pledged_amount == 11000
    # Changes that keep it funded are fine.
    assert (
        submit(
            guest, link + "/amount", {"amount": "20", "confirmed_amount": "2000"}, form_page=link
        ).status_code
        == 302
    )
    assert (
        submit(
            guest, link + "/amount", {"amount": "50", "confirmed_amount": "5000"}, form_page=link
        ).status_code
        == 302
    )
    assert campaign_row(app, slug).pledged_amount == 13000


def test_pledge_events_are_append_only_on_postgres(app, client, backend):
    slug = live_campaign(app)
    pledge(client, slug)
    with app.app_context():
        if backend != "postgresql":
            return  # the trigger is PostgreSQL's; SQLite keeps the rule in code only
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text("UPDATE pledge_events SET kind = 'forged'"))
        db.session.rollback()
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text("DELETE FROM pledge_events"))
        db.session.rollback()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_200_parallel_pledges_lose_no_update(app):
    slug = live_campaign(app)
    amounts = [100 + n for n in range(200)]

    def one(amount: int) -> int:
        client = app.test_client()
        return pledge(client, slug, amount=str(amount), email=f"s{amount}@example.org").status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(one, amounts))
    assert codes == [302] * 200
    made = pledges(app)
    assert len(made) == 200 and all(p.status == "active" for p in made)
    campaign = campaign_row(app, slug)
    assert campaign.backer_count == 200
    assert campaign.pledged_amount == sum(a * 100 for a in amounts) == sum(p.amount for p in made)


def test_public_ids_never_look_like_command_line_options():
    from payments.services import new_public_id

    assert not any(new_public_id().startswith("-") for _ in range(5000))


def test_a_settled_campaign_still_shows_its_supporters_as_they_chose(app):
    """After settlement the campaign page showed "Nobody has pledged yet. Be the first."
    beside its backers and the sum collected: supporters are shown in every state."""
    slug = live_campaign(app, goal="10", budget_note="The rest comes from the union.")
    client = app.test_client()
    response = pledge(
        client,
        slug,
        amount="25",
        visibility="name",
        public_name="Night shift of Bay 4",
        public_message="Solidarity from the loading dock",
    )
    assert response.status_code == 302
    assert pledge(client, slug, amount="15", email="quiet@example.org").status_code == 302
    cid = campaign_row(app, slug).id
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign_row(app, slug).status == "settled"
    page = client.get(f"/c/{slug}").get_data(as_text=True)
    assert "Night shift of Bay 4" in page and "Solidarity from the loading dock" in page
    assert "Anonymous" in page
    assert "Nobody has pledged yet" not in page and "Be the first" not in page


def test_the_manage_page_names_the_card_network_of_the_card_saved(app):
    slug = live_campaign(app)
    client = app.test_client()
    response = pledge(client, slug, card="5555 5555 5555 4444")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Mastercard ···· 4444" in page and "Visa" not in page


def test_the_pledged_over_time_chart_draws_something_you_can_see(app):
    """It rendered as an empty box: on a campaign launched today every point sat on the
    left edge, and a total far below the goal lay flat on the bottom edge."""
    from payments.chart import HEIGHT, WIDTH, pledge_chart

    slug = live_campaign(app)  # a goal of 5,000.50
    assert pledge(app.test_client(), slug, amount="25").status_code == 302
    with app.test_request_context():
        chart = pledge_chart(campaign_row(app, slug))
    points = [tuple(map(float, p.split(","))) for p in chart["points"].split()]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    assert max(xs) - min(xs) >= WIDTH / 2, points  # it spans the time axis
    assert max(ys) - min(ys) >= HEIGHT / 3, points  # and rises visibly
    assert all(0 <= y <= HEIGHT for y in ys)
    # Far below the goal, the goal line is left out rather than squashing the curve.
    assert chart["goal_y"] is None


def test_organizers_read_their_backers_messages_and_nobody_else_does(app):
    """ "Private message to the organizers" went nowhere: the committee sees each
    backer as they chose to appear, with both messages, on a page and in a CSV export
    (formula cells defused); no email address; strangers get a 404."""
    slug = live_campaign(app)
    organizer = app.test_client()
    login(organizer, email="org@example.org")
    supporter = app.test_client()
    response = pledge(
        supporter,
        slug,
        amount="25",
        visibility="pseudonym",
        public_name="Night shift",
        public_message="Solidarity!",
        private_message='=HYPERLINK("http://evil.example") call me about the picket rota',
    )
    assert response.status_code == 302
    assert pledge(supporter, slug, amount="5", email="anon@example.org").status_code == 302

    page = organizer.get(f"/c/{slug}/backers")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Night shift" in html and "Solidarity!" in html
    assert "call me about the picket rota" in html and "Anonymous" in html
    assert "sup@example.org" not in html and "anon@example.org" not in html

    export = organizer.get(f"/c/{slug}/backers.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    [night] = [r for r in rows if "Night shift" in r]
    assert '\'=HYPERLINK("http://evil.example") call me about the picket rota' in night
    assert not any("@example.org" in cell for row in rows for cell in row)

    detail = organizer.get(f"/c/{slug}").get_data(as_text=True)
    assert f"/c/{slug}/backers" in detail  # among the organizer's tools
    stranger = app.test_client()
    register(stranger, email="stranger@example.org", name="Stranger")
    assert stranger.get(f"/c/{slug}/backers").status_code == 404
    assert stranger.get(f"/c/{slug}/backers.csv").status_code == 404
    assert app.test_client().get(f"/c/{slug}/backers").status_code == 302  # log in first


def test_a_pledges_history_is_told_in_the_supporters_language(app):
    """The manage page's history read "activated (active)" in every language."""
    slug = live_campaign(app)
    client = app.test_client()
    submit(client, "/language", {"locale": "de", "next": "/"}, form_page="/login")
    manage = client.get(pledge(client, slug).headers["Location"]).get_data(as_text=True)
    history = manage[manage.index("<ol") :]
    assert "created" not in history and "activated" not in history
    with app.test_request_context(), force_locale("de"):
        assert gettext("Card saved: pledge active") in history

"""The five journeys people take through Counterfund, in a real browser.

Each journey saves screenshots (desktop 1280x800 and phone 390x844) under
test-artifacts/e2e/<journey>/, checks the listed pages with axe (no serious or
critical violations), and asserts the browser never requested anything from another
origin (Stripe.js on payment pages, with the Stripe backend, being the one exception).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Journey, Server

PASSWORD = "a sturdy picket line 2026"


@pytest.fixture
def journey(browser, server, request):
    walk = Journey(browser, server, request.node.name.removeprefix("test_"))
    yield walk
    try:
        walk.assert_fits_phone()
    finally:
        walk.close()


def _register(page, server, email, name):
    page.goto(server.url + "/register")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Display name").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    page.goto(server.last_link(email, "/register/confirm/"))
    expect(page.get_by_role("heading", name="Your campaigns")).to_be_visible()


def test_1_organizer_launches_a_campaign(journey):
    page = journey.page
    _register(page, journey.server, "friend@example.org", "Friend of the Bakers")
    page.get_by_role("button", name="Log out").click()
    _register(page, journey.server, "bakers@example.org", "Bakers' Committee")
    journey.axe("dashboard")
    journey.shoot("dashboard")

    page.get_by_role("link", name="Start a campaign").first.click()
    page.get_by_label("Title", exact=True).fill("Strike fund for the night bakers")
    page.get_by_label("One-line summary").fill("Sixty bakers on strike for a union contract.")
    page.get_by_label("Story", exact=True).fill("## Why\n\nNo raise in **six years**.")
    page.get_by_label("Kind", exact=True).select_option("strike_fund")
    page.get_by_label("Goal", exact=True).fill("3000")
    deadline = (datetime.now(UTC) + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Deadline (UTC)").fill(deadline)
    page.get_by_label("Budget line 1: what it pays for").fill("Strike pay")
    page.get_by_label("Budget line 1: amount").fill("2500")
    page.get_by_label("Budget line 2: what it pays for").fill("Picket supplies")
    page.get_by_label("Budget line 2: amount").fill("500")
    page.get_by_label("Source 1 title").fill("Strike ballot")
    page.get_by_label("Source 1 link").fill("https://example.org/ballot")
    journey.shoot("draft-form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Draft saved")).to_be_visible()
    page.get_by_role("link", name="Launch campaign").click()
    # Launching locks the terms: the page lists them and asks first.
    expect(page.get_by_role("heading", name=re.compile("^Launch “Strike fund"))).to_be_visible()
    expect(page.get_by_text("€3,000.00").first).to_be_visible()
    journey.axe("launch-confirmation")
    journey.shoot("launch-confirmation")
    page.get_by_role("button", name="Launch now").click()
    expect(page.get_by_text("Your campaign is live.")).to_be_visible()
    journey.shoot("launched")

    # Editing the live campaign saves what its page sends.
    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("One-line summary").fill("Sixty night bakers on strike for a union contract.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.get_by_text("Sixty night bakers on strike for a union contract.")).to_be_visible()

    page.get_by_role("link", name="Committee").click()
    page.get_by_label("Their email address").fill("friend@example.org")
    page.get_by_label("Role", exact=True).select_option("treasurer")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_text("We have emailed an invitation to friend@example.org")).to_be_visible()
    page.get_by_role("link", name="Back to the campaign").click()
    page.get_by_role("link", name="Post an update").click()
    page.get_by_label("Title", exact=True).fill("Day one on the picket")
    page.get_by_label("Message", exact=True).fill("Thank you for the *soup*.")
    page.get_by_role("button", name="Post update").click()
    expect(page.get_by_role("heading", name="Day one on the picket")).to_be_visible()
    journey.axe("campaign")
    journey.shoot("update-posted")
    journey.assert_no_third_party_requests()


def _confirm_amount(page, button: str) -> None:
    """The exact amount is shown before anything is saved; the supporter confirms it."""
    expect(page.locator("#confirm-amount")).to_be_visible()
    page.get_by_role("button", name=re.compile("^" + re.escape(button))).click()


def _pledge(page, base, slug, email, amount="25", message="", card="4242 4242 4242 4242"):
    page.goto(f"{base}/c/{slug}")
    page.get_by_role("link", name="Back this campaign").click()
    page.get_by_label("Amount", exact=True).fill(amount)
    page.get_by_label("Email address", exact=True).fill(email)
    if message:
        page.get_by_label("Private message to the organizers (optional)").fill(message)
    page.get_by_label("Card number (demo)").fill(card)
    page.get_by_role("button", name="Pledge").click()
    _confirm_amount(page, "Confirm my pledge")
    expect(page.get_by_text("Your pledge is active")).to_be_visible()


def test_2_guest_supporter_pledges_changes_cancels_and_pledges_again(journey):
    page, base, server = journey.page, journey.server.url, journey.server
    journey.go("/")
    journey.axe("home")
    page.get_by_role("link", name="Campaigns", exact=True).click()
    # Two words, in another order than the title's: full-text search finds it.
    page.get_by_label("Search", exact=True).fill("bakers strike")
    page.get_by_role("button", name="Show").click()
    journey.axe("listing")
    journey.shoot("search")
    page.get_by_role("link", name="Strike fund for the night bakers").click()
    page.get_by_role("link", name="Back this campaign").click()
    expect(page.get_by_text("Demo payments.")).to_be_visible()
    journey.axe("pledge")
    page.get_by_label("Amount", exact=True).fill("25")
    page.get_by_label("Email address", exact=True).fill("guest@example.org")
    page.get_by_label("Card number (demo)").fill("4242 4242 4242 4242")
    journey.shoot("pledge-form")
    page.get_by_role("button", name="Pledge").click()
    _confirm_amount(page, "Confirm my pledge")
    expect(page.get_by_text("Your pledge is active")).to_be_visible()

    journey.go(server.last_link("guest@example.org"))
    journey.axe("manage-pledge")
    journey.shoot("manage")
    page.get_by_label("New amount").fill("40")
    page.get_by_role("button", name="Change amount").click()
    _confirm_amount(page, "Confirm: €40.00")
    expect(page.get_by_text("Your pledge is now €40.00")).to_be_visible()
    page.get_by_role("link", name="Cancel my pledge").click()
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    journey.axe("cancel-confirmation")
    page.get_by_role("button", name="Yes, cancel my pledge").click()
    expect(page.get_by_text("Your pledge is cancelled")).to_be_visible()
    journey.shoot("cancelled")
    _pledge(
        page,
        base,
        "strike-fund-for-the-night-bakers",
        "guest@example.org",
        "30",
        message="I can bring a generator to the picket.",
    )
    journey.shoot("pledged-again")
    journey.go("/c/strike-fund-for-the-night-bakers")
    expect(page.get_by_text("€30.00", exact=True)).to_be_visible()
    journey.assert_no_third_party_requests()


@pytest.fixture(scope="module")
def stripe_server(tmp_path_factory, localstripe):
    from tests.conftest import STRIPE_TEST_CONFIG

    running = Server(
        tmp_path_factory.mktemp("stripe-server"),
        **STRIPE_TEST_CONFIG,
        STRIPE_API_BASE=localstripe,
        STRIPE_JS_URL=f"{localstripe}/js.stripe.com/v3/",
    )
    yield running
    running.stop()


def test_3_pledge_through_stripe_elements_on_localstripe(browser, stripe_server, localstripe):
    journey = Journey(browser, stripe_server, "3_stripe_pledge", third_party_ok=(localstripe,))
    page = journey.page
    try:
        journey.go("/c/northside-winter-heating-fund")
        page.get_by_role("link", name="Back this campaign").click()
        expect(page.get_by_label("Card number (demo)")).to_have_count(0)
        page.get_by_label("Amount", exact=True).fill("15")
        page.get_by_label("Email address", exact=True).fill("stripe-guest@example.org")
        page.get_by_role("button", name="Pledge").click()
        _confirm_amount(page, "Confirm my pledge")
        expect(page.get_by_role("heading", name=re.compile("Card for your pledge"))).to_be_visible()
        card = page.locator("#card-element")
        card.locator("input[placeholder=number]").fill("4242424242424242")
        card.locator("input[placeholder=exp_month]").fill("12")
        card.locator("input[placeholder=exp_year]").fill("34")
        card.locator("input[placeholder=cvc]").fill("123")
        card.locator("input[placeholder=postal_code]").fill("12345")
        journey.shoot("stripe-elements")
        page.get_by_role("button", name="Save card").click()
        expect(page.get_by_text("Your pledge is active")).to_be_visible(timeout=15000)
        expect(page.get_by_text("Visa ···· 4242", exact=False)).to_be_visible()
        journey.shoot("active")
        stripe_js = [url for _, url in journey.requests if url.startswith(localstripe)]
        assert stripe_js, "Stripe.js (localstripe's stand-in) was never loaded"
        journey.assert_no_third_party_requests()
        journey.assert_fits_phone()
    finally:
        journey.close()


def test_3b_a_3d_secure_charge_is_confirmed_with_the_bank_through_stripe_js(
    browser, stripe_server, localstripe
):
    """A card whose bank wants the supporter (3-D Secure) at the deadline: the email
    brings them back, Stripe.js (localstripe's stand-in) runs the bank's step, and the
    return page records the charge. localstripe's stand-in has no handleNextAction: its
    confirmCardPayment plays the same step (static/js/stripe-authenticate.js)."""
    journey = Journey(browser, stripe_server, "3b_stripe_3d_secure", third_party_ok=(localstripe,))
    page, server = journey.page, stripe_server
    slug, email = "legal-defence-for-the-dismissed-reps", "3ds-guest@example.org"
    try:
        journey.go(f"/c/{slug}")
        page.get_by_role("link", name="Back this campaign").click()
        page.get_by_label("Amount", exact=True).fill("20")
        page.get_by_label("Email address", exact=True).fill(email)
        page.get_by_role("button", name="Pledge").click()
        _confirm_amount(page, "Confirm my pledge")
        card = page.locator("#card-element")
        card.locator("input[placeholder=number]").fill("4000002760003184")
        card.locator("input[placeholder=exp_month]").fill("12")
        card.locator("input[placeholder=exp_year]").fill("34")
        card.locator("input[placeholder=cvc]").fill("123")
        card.locator("input[placeholder=postal_code]").fill("12345")
        page.get_by_role("button", name="Save card").click()
        page.get_by_role("button", name="Complete authentication").click()  # saving's 3DS
        expect(page.get_by_text("Your pledge is active")).to_be_visible(timeout=15000)
        # The deadline passes and the campaign is funded (flexible, for this test).
        server.sql(
            "UPDATE campaigns SET deadline = datetime('now', '-1 minute'),"
            " funding_model = 'flexible' WHERE slug = ?",
            slug,
        )
        output = server.flask("settle", "--due")
        assert "needs_authentication" in output or "authentication" in output, output
        page.goto(server.last_link(email))
        page.get_by_role("link", name=re.compile("Confirm")).first.click()
        expect(page.get_by_role("button", name="Confirm with my bank")).to_be_visible()
        journey.axe("authenticate")
        journey.shoot("bank-step")
        page.get_by_role("button", name="Confirm with my bank").click()
        page.get_by_role("button", name="Complete authentication").click()
        expect(page.get_by_text("Thank you: your payment is confirmed.")).to_be_visible(
            timeout=15000
        )
        expect(page.get_by_text("Charged").first).to_be_visible()
        journey.shoot("charged")
        charged = server.sql(
            "SELECT p.status, p.provider_charge_id, c.collected_amount FROM pledges p"
            " JOIN campaigns c ON c.id = p.campaign_id WHERE c.slug = ?",
            slug,
        )
        assert [(status, amount) for status, _id, amount in charged] == [("charged", 2000)]
        assert charged[0][1].startswith("pi_")
        assert "OK: the ledger verifies." in server.flask("ledger", "verify")
        journey.assert_no_third_party_requests()
    finally:
        journey.close()


def test_4_deadline_passes_settlement_charges_and_everyone_sees_it(journey):
    page, base, server = journey.page, journey.server.url, journey.server
    slug = "living-wage-for-university-cleaners"
    _pledge(page, base, slug, "settled@example.org", "12")
    # The test holds the clock: the deadline moves into the past, then settlement runs.
    server.sql("UPDATE campaigns SET deadline = datetime('now', '-1 minute') WHERE slug = ?", slug)
    output = server.flask("settle", "--due")
    assert "charged" in output
    journey.go(server.last_link("settled@example.org"))
    expect(page.get_by_role("heading", name="Receipt")).to_be_visible()
    expect(page.get_by_text("£12.00").first).to_be_visible()
    journey.axe("receipt")
    journey.shoot("receipt")

    page.goto(base + "/login")
    page.get_by_label("Email address", exact=True).fill("cleaners@example.org")
    page.get_by_label("Password", exact=True).fill("night bakers of Riverside")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{base}/c/{slug}")
    page.get_by_role("link", name="Settlement progress").click()
    expect(page.get_by_role("row", name=re.compile(r"^Charged \d+"))).to_be_visible()
    journey.axe("settlement")
    journey.shoot("organizer-progress")
    journey.assert_no_third_party_requests()


def test_5_auditor_filters_downloads_and_verifies_a_proof(journey, tmp_path):
    page, server = journey.page, journey.server
    journey.go("/ledger")
    journey.axe("ledger")
    # The demo's history is on the ledger from the first start: a settled campaign's
    # page lists its charges, fees, refund and disbursement.
    for path, label in (("/how-it-works", "how"), ("/terms", "terms"), ("/privacy", "privacy")):
        journey.go(path)
        journey.axe(label)
    journey.shoot("privacy")
    journey.go("/c/back-pay-for-the-eastgate-bus-cleaners/ledger")
    expect(page.get_by_role("cell", name="disbursement").first).to_be_visible()
    journey.axe("campaign-ledger")
    journey.shoot("campaign-ledger")
    journey.go("/ledger")
    page.get_by_label("Kind", exact=True).select_option("pledge_charge")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name="pledge charge").first).to_be_visible()
    expect(page.get_by_role("cell", name="processor fee")).to_have_count(0)
    journey.shoot("ledger-filtered")
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    csv_path = tmp_path / "ledger.csv"
    csv_download.value.save_as(csv_path)
    assert csv_path.read_text().startswith("index,time,kind")
    with page.expect_download() as json_download:
        page.get_by_role("link", name="Download JSON").click()
    json_path = tmp_path / "ledger.json"
    json_download.value.save_as(json_path)
    export = json.loads(json_path.read_text())
    assert export["entries"] and export["checkpoint"]

    journey.go(server.last_link("settled@example.org"))
    page.get_by_role("link", name=re.compile("See this charge on the public ledger")).click()
    expect(page.get_by_text("Verified in your browser")).to_be_visible()
    journey.axe("ledger-entry")
    journey.shoot("proof-verified")
    journey.assert_no_third_party_requests()


def _log_in(page, base, email, password):
    page.goto(base + "/login")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def test_6_organizer_reads_a_private_message_and_resets_a_forgotten_password(journey):
    """The bakers' committee (journey 1) reads journey 2's private message on its
    dashboard's backers page; then, having forgotten its password, logs in from the
    link in the outbox and chooses a new one."""
    page, base, server = journey.page, journey.server.url, journey.server
    _log_in(page, base, "bakers@example.org", PASSWORD)
    expect(page.get_by_role("heading", name="Your campaigns")).to_be_visible()
    expect(page.get_by_text("1 private message from backers")).to_be_visible()
    journey.axe("dashboard-with-a-campaign")
    journey.shoot("dashboard")
    page.get_by_role("link", name="Backers and messages").first.click()
    expect(page.get_by_text("I can bring a generator to the picket.")).to_be_visible()
    journey.axe("backers")
    journey.shoot("backers")

    # An update emailed to the backers; one of them unsubscribes with one click.
    page.goto(base + "/c/strike-fund-for-the-night-bakers")
    page.get_by_role("link", name="Post an update").click()
    page.get_by_label("Title", exact=True).fill("The bakery owners want to talk")
    page.get_by_label("Message", exact=True).fill("Negotiations start on Monday.")
    expect(page.get_by_label("Also email it to the campaign's backers")).to_be_checked()
    page.get_by_role("button", name="Post update").click()
    expect(page.get_by_role("heading", name="The bakery owners want to talk")).to_be_visible()
    [update] = [m for m in server.mails("guest@example.org") if "want to talk" in m]
    unsubscribe = re.findall(r"(http://\S+/unsubscribe/\S+)", update.split("\n\n", 1)[1])[0]
    page.goto(unsubscribe)
    journey.axe("unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(
        page.get_by_text("you will no longer receive the updates of this campaign")
    ).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    page.goto(base + "/login")
    page.get_by_role("link", name=re.compile("Forgot your password")).click()
    page.get_by_label("Email address", exact=True).fill("bakers@example.org")
    page.get_by_role("button", name="Email me a login link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    page.goto(server.last_link("bakers@example.org", "/login/link/"))
    expect(page.get_by_text("choose a new one below")).to_be_visible()
    page.get_by_label("New password", exact=True).fill("loaves for the picket line")
    page.get_by_label("Repeat new password").fill("loaves for the picket line")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Password changed.")).to_be_visible()
    journey.axe("account")
    page.get_by_role("button", name="Log out").click()
    _log_in(page, base, "bakers@example.org", PASSWORD)
    expect(page.get_by_text("do not match")).to_be_visible()
    _log_in(page, base, "bakers@example.org", "loaves for the picket line")
    expect(page.get_by_role("heading", name="Your campaigns")).to_be_visible()
    journey.assert_no_third_party_requests()


def test_7_a_supporter_downloads_their_data_and_closes_their_account(journey, tmp_path):
    page, base, server = journey.page, journey.server.url, journey.server
    _register(page, server, "leaving@example.org", "Leaving Soon")
    page.goto(f"{base}/c/northside-winter-heating-fund")
    page.get_by_role("link", name="Back this campaign").click()
    page.get_by_label("Amount", exact=True).fill("15")
    page.get_by_label("Card number (demo)").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pledge").click()
    _confirm_amount(page, "Confirm my pledge")
    expect(page.get_by_text("Your pledge is active")).to_be_visible()

    page.get_by_role("link", name="Account", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download my data (JSON)").click()
    path = tmp_path / "my-data.json"
    download.value.save_as(path)
    data = json.loads(path.read_text())
    assert data["account"]["email"] == "leaving@example.org"
    assert [p["campaign"] for p in data["pledges"]] == ["northside-winter-heating-fund"]

    page.get_by_label("Current password").last.fill(PASSWORD)
    page.get_by_label(re.compile("I understand: my account is closed for good")).check()
    journey.axe("account-close")
    journey.shoot("account-close")
    page.get_by_role("button", name="Close my account").click()
    expect(page.get_by_text("Your account is closed.")).to_be_visible()
    assert "is closed" in server.mails("leaving@example.org")[-1]
    _log_in(page, base, "leaving@example.org", PASSWORD)
    expect(page.get_by_text("do not match")).to_be_visible()
    journey.assert_no_third_party_requests()


def _pdf() -> bytes:
    from io import BytesIO

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _a_week_passes(server, slug: str) -> None:
    """The test's hand on the clock: everything this campaign dated moves a week back,
    then the sweep runs (`flask settle --due`), as at the end of its running period."""
    week = "-7 days"
    [(campaign_id,)] = server.sql("SELECT id FROM campaigns WHERE slug = ?", slug)
    server.sql(
        "UPDATE campaigns SET launched_at = datetime(launched_at, ?),"
        " deadline = datetime(deadline, ?) WHERE id = ?",
        week,
        week,
        campaign_id,
    )
    server.sql(
        "UPDATE campaign_recurrences SET ends_at = datetime(ends_at, ?) WHERE campaign_id = ?",
        week,
        campaign_id,
    )
    server.sql(
        "UPDATE campaign_periods SET starts_at = datetime(starts_at, ?),"
        " ends_at = datetime(ends_at, ?), decided_at = datetime(decided_at, ?)"
        " WHERE campaign_id = ?",
        week,
        week,
        week,
        campaign_id,
    )
    server.sql(
        "UPDATE pledges SET activated_at = datetime(activated_at, ?),"
        " created_at = datetime(created_at, ?) WHERE campaign_id = ?",
        week,
        week,
        campaign_id,
    )
    server.flask("settle", "--due")


def test_8_a_weekly_strike_fund_charges_its_backers_week_by_week(journey):
    """An organizer launches a weekly strike fund that needs two backers a week; two
    supporters pledge every week; two weeks pass; each sees two charges, the public
    sees each week's total, and strike pay goes out as one batch whose names the public
    never sees."""
    page, base, server = journey.page, journey.server.url, journey.server
    _register(page, server, "drivers@example.org", "Drivers' Strike Committee")
    page.get_by_role("link", name="Start a campaign").first.click()
    page.get_by_label("Title", exact=True).fill("Weekly strike pay for the tram drivers")
    page.get_by_label("One-line summary").fill("Strike pay every Friday while the strike lasts.")
    page.get_by_label("Story", exact=True).fill("Forty drivers, an open-ended strike.")
    page.get_by_label("Kind", exact=True).select_option("strike_fund")
    page.get_by_label("Goal", exact=True).fill("400")
    ends = (datetime.now(UTC) + timedelta(weeks=6, hours=1)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Deadline (UTC)").fill(ends)
    page.get_by_label("Repeats").select_option("week")
    page.get_by_label("Per period: least number of backers (optional)").fill("2")
    page.get_by_label("Budget line 1: what it pays for").fill("Strike pay")
    page.get_by_label("Budget line 1: amount").fill("400")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Draft saved")).to_be_visible()
    page.get_by_role("link", name="Launch campaign").click()
    page.get_by_role("button", name="Launch now").click()
    expect(page.get_by_text("Your campaign is live.")).to_be_visible()
    expect(page.get_by_role("heading", name="Every week")).to_be_visible()
    slug = page.url.rsplit("/", 1)[-1]
    page.get_by_role("button", name="Log out").click()

    for email, amount in (("weekly-one@example.org", "10"), ("weekly-two@example.org", "15")):
        page.goto(f"{base}/c/{slug}")
        page.get_by_role("link", name="Back this campaign").click()
        page.get_by_label("Amount", exact=True).fill(amount)
        page.get_by_label("Email address", exact=True).fill(email)
        page.get_by_label("Card number (demo)").fill("4242 4242 4242 4242")
        page.get_by_label("Charge me this amount in every period that meets its threshold").check()
        page.get_by_role("button", name="Pledge").click()
        expect(page.get_by_text(re.compile(rf"€{amount}\.00 every week"))).to_be_visible()
        journey.axe("recurring-confirmation")
        _confirm_amount(page, "Confirm my pledge")
        expect(page.get_by_text("You pledged this amount every week")).to_be_visible()

    _a_week_passes(server, slug)
    _a_week_passes(server, slug)

    # Each week's receipt links to that charge; the confirmation to the standing pledge.
    [confirmation] = [m for m in server.mails("weekly-one@example.org") if "in every period" in m]
    journey.go(server.url + re.findall(r"(/pledge/\S+)", confirmation)[0])
    expect(page.get_by_text("You pledged this amount every week")).to_be_visible()
    expect(page.get_by_role("cell", name="Charged")).to_have_count(2)
    journey.shoot("weekly-supporter")

    journey.go(f"/c/{slug}")
    expect(page.get_by_text("Period 3 of 6 ends")).to_be_visible()
    periods = page.locator("table.periods")
    expect(periods.get_by_role("cell", name="Charged")).to_have_count(2)
    expect(periods.get_by_role("cell", name="€25.00")).to_have_count(2)
    journey.axe("recurring-campaign")
    journey.shoot("weekly-campaign")

    # Strike pay to three drivers as one batch: a treasurer records it, the owner approves.
    _log_in(page, base, "drivers@example.org", PASSWORD)
    page.goto(f"{base}/c/{slug}/team")
    page.get_by_label("Their email address").fill("tram-treasurer@example.org")
    page.get_by_label("Role", exact=True).select_option("treasurer")
    page.get_by_role("button", name="Send the invitation").click()
    page.get_by_role("button", name="Log out").click()
    _register(page, server, "tram-treasurer@example.org", "Tram Treasurer")
    [invitation] = [m for m in server.mails("tram-treasurer@example.org") if "/invitations/" in m]
    page.goto(server.url + re.findall(r"(/invitations/\S+)", invitation)[0])
    page.get_by_role("button", name="Accept the invitation").click()
    page.goto(f"{base}/c/{slug}/disbursements/new")
    page.get_by_label(re.compile("^Or many people at once")).fill(
        "Tram driver Ana Ruiz; 15\nTram driver Ben Okoro; 10\nTram driver Cai Lin; 12.50"
    )
    page.get_by_label("What it paid for").fill("Strike pay, week 2")
    page.get_by_label("Amount", exact=True).fill("37.50")
    page.get_by_label("Receipt (PDF, PNG or JPEG)").set_input_files(
        files=[{"name": "transfers.pdf", "mimeType": "application/pdf", "buffer": _pdf()}]
    )
    page.get_by_role("button", name="Record for approval").click()
    expect(page.get_by_text("3 payees (batch)")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    _log_in(page, base, "drivers@example.org", PASSWORD)
    page.goto(f"{base}/c/{slug}/disbursements")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Approved: it is on the public ledger.")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    journey.go(f"/c/{slug}/disbursements")
    expect(page.get_by_text("3 payees (batch)")).to_be_visible()
    expect(page.get_by_text("Strike pay, week 2")).to_be_visible()
    journey.go(f"/c/{slug}/ledger")
    assert "Ana Ruiz" not in page.content() and "3 payees (batch)" in page.content()
    journey.axe("batch-on-the-ledger")
    api = json.loads(page.request.get(f"{base}/api/v1/campaigns/{slug}/periods").text())
    assert [(p["period"], p["status"], p["collected"]["amount"]) for p in api["periods"]] == [
        (1, "charged", 2500),
        (2, "charged", 2500),
        (3, "open", 0),
    ]
    journey.assert_no_third_party_requests()


DEMO_PASSWORD = "night bakers of Riverside"
# Three different cards the simulated provider charges: three distinct backers.
CARDS = ("5555 5555 5555 4444", "4012 8888 8888 1881", "6011 1111 1111 1117")


def _settle_now(server, slug: str) -> None:
    """The test's hand on the clock: the deadline passes and settlement runs; a card
    declined at the deadline (the demo has one per live campaign) reaches the end of
    its retry window, so the campaign ends settled."""
    server.sql("UPDATE campaigns SET deadline = datetime('now', '-1 minute') WHERE slug = ?", slug)
    server.flask("settle", "--due")
    for _round in range(3):
        [(status,)] = server.sql("SELECT status FROM campaigns WHERE slug = ?", slug)
        if status == "settled":
            return
        server.sql(
            "UPDATE pledges SET retry_until = datetime('now', '-1 minute'),"
            " next_reminder_at = NULL WHERE status IN ('failed', 'needs_authentication')"
        )
        server.flask("settle", "--due")
    raise AssertionError(f"{slug} did not settle: {status}")


def test_9_a_funders_quadratic_round_multiplies_many_small_pledges(journey, tmp_path):
    """A trades council opens a quadratic round with a pool; two campaigns' committees
    apply and are accepted; supporters see the estimate and pledge; the campaigns settle;
    the round closes and is finalised; the public sees the matches on the ledger; and the
    offline verifier's `round` command recomputes them from the published data."""
    import subprocess
    import sys

    page, base, server = journey.page, journey.server.url, journey.server
    _register(page, server, "fund@example.org", "Harbour Trades Council")
    journey.go("/rounds")
    page.get_by_role("link", name="Open a matching round").click()
    page.get_by_label("Name", exact=True).fill("Harbour solidarity round")
    page.get_by_label("Funder", exact=True).fill("Harbour Trades Council")
    page.get_by_label("Description").fill("Matches **many** small pledges.")
    page.get_by_label("Rule", exact=True).select_option("quadratic")
    now = datetime.now(UTC)
    page.get_by_label("Opens (UTC)").fill((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Closes (UTC)").fill((now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"))
    journey.axe("round-form")
    page.get_by_role("button", name="Open the round").click()
    expect(page.get_by_text("The round is open.")).to_be_visible()
    page.get_by_label("Amount received").fill("1,000")
    page.get_by_label("Receipt").fill("Bank transfer, reference HTC-77")
    page.get_by_role("button", name="Record the money").click()
    expect(page.get_by_text("Recorded: €1,000.00")).to_be_visible()
    round_url = page.get_by_role("link", name="Back to the round").get_attribute("href")
    round_id = int(round_url.rsplit("/", 1)[-1])
    journey.context.clear_cookies()

    # A new committee launches a flexible campaign and applies with it; the demo's
    # heating fund applies too. Each applies from the round's page.
    _register(page, server, "porters@example.org", "Harbour Porters' Committee")
    page.get_by_role("link", name="Start a campaign").first.click()
    page.get_by_label("Title", exact=True).fill("Hardship fund for the harbour porters")
    page.get_by_label("One-line summary").fill("Rent for porters locked out by the port.")
    page.get_by_label("Story", exact=True).fill("Twelve porters, locked out since Monday.")
    page.get_by_label("Kind", exact=True).select_option("mutual_aid")
    page.get_by_label("Goal", exact=True).fill("300")
    page.get_by_label("Funding model").select_option("flexible")
    page.get_by_label("Deadline (UTC)").fill((now + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Budget line 1: what it pays for").fill("Rent, one month")
    page.get_by_label("Budget line 1: amount").fill("300")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("link", name="Launch campaign").click()
    page.get_by_role("button", name="Launch now").click()
    expect(page.get_by_text("Your campaign is live.")).to_be_visible()
    porters = page.url.rsplit("/", 1)[-1]
    journey.context.clear_cookies()
    for email, password, title in (
        ("porters@example.org", PASSWORD, "Hardship fund for the harbour porters"),
        ("tenants@example.org", DEMO_PASSWORD, "Northside winter heating fund"),
    ):
        _log_in(page, base, email, password)
        journey.go(f"/rounds/{round_id}")
        page.get_by_label("Campaign", exact=True).select_option(label=title)
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_text("Applied.")).to_be_visible()
        journey.context.clear_cookies()

    _log_in(page, base, "fund@example.org", PASSWORD)
    journey.go(f"/rounds/{round_id}/manage")
    journey.axe("round-committee")
    journey.shoot("round-committee")
    for title in ("Hardship fund", "Northside"):
        page.get_by_role("button", name=re.compile("^Accept " + title)).click()
        expect(page.get_by_text("Accepted: the campaign shows")).to_be_visible()
    journey.context.clear_cookies()

    slugs = (porters, "northside-winter-heating-fund")
    journey.go(f"/c/{slugs[0]}")
    expect(page.get_by_text("Matched by Harbour solidarity round")).to_be_visible()
    # No backer yet: one alone brings no quadratic match, and the page says so.
    expect(page.get_by_text("matching grows with the number of backers")).to_be_visible()
    for n, card in enumerate(CARDS):
        _pledge(page, base, slugs[0], f"round-backer-{n}@example.org", "5", card=card)
        if n == 0:  # now one more backer would bring matching: the estimate shows it
            journey.go(f"/c/{slugs[0]}")
            estimate = re.compile(r"Your €5\.00 now brings about €[\d,.]+ of matching")
            expect(page.get_by_text(estimate)).to_be_visible()
            journey.axe("campaign-with-a-round")
            journey.shoot("campaign-estimate")
    _pledge(page, base, slugs[1], "round-backer-x@example.org", "5", card=CARDS[0])
    for slug in slugs:
        _settle_now(server, slug)

    # The round closes (the test holds its clock), and the treasurer (here the owner)
    # finalises it after reading each match on the confirmation page.
    time.sleep(1.1)  # every charge strictly before the close, at the clock's resolution
    server.sql("UPDATE rounds SET closes_at = datetime('now') WHERE id = ?", round_id)
    _log_in(page, base, "fund@example.org", PASSWORD)
    journey.go(f"/rounds/{round_id}/manage")
    page.get_by_role("link", name="Finalise the round").click()
    journey.axe("round-finalise")
    page.get_by_role("button", name="Finalise the round").click()
    expect(page.get_by_text("The round is final")).to_be_visible()
    journey.axe("round-final")
    journey.shoot("round-final")
    journey.context.clear_cookies()

    document = json.loads(page.request.get(f"{base}/api/v1/rounds/{round_id}").text())
    matches = {c["slug"]: c["match"] for c in document["campaigns"]}
    assert document["status"] == "final" and sum(matches.values()) == 1000_00
    assert all(matches[slug] > 0 for slug in slugs)
    journey.go("/ledger?kind=round_match")
    # The demo's finalised round's two matches, and this round's two.
    expect(page.get_by_role("cell", name="matching")).to_have_count(4)
    expect(page.get_by_role("row", name=re.compile("Harbour Trades Council"))).to_have_count(2)
    journey.go(f"/c/{slugs[0]}/ledger")
    expect(page.get_by_text("Matched by rounds")).to_be_visible()
    journey.axe("campaign-ledger-with-a-match")
    journey.go(f"/c/{slugs[0]}")
    expect(page.get_by_text(re.compile("This campaign received €"))).to_be_visible()

    # Anyone recomputes it offline, downloading the round and the ledger themselves.
    checkpoint = tmp_path / "checkpoint.txt"
    checkpoint.write_text(page.request.get(f"{base}/api/v1/ledger/checkpoint").text())
    key = page.request.get(f"{base}/api/v1/ledger/key").text().strip()
    verified = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[2] / "verifier" / "counterfund_verify.py"),
            "round",
            f"{base}/api/v1/rounds/{round_id}",
            "--export",
            f"{base}/ledger/export.json",
            "--key",
            key,
            "--checkpoint",
            str(checkpoint),
        ],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert "each match is its entry" in verified.stdout and "OK" in verified.stdout
    journey.assert_no_third_party_requests()


def test_10_a_union_website_embeds_the_widget(journey, tmp_path):
    """The union's own site (another origin: localhost on another port) frames the
    campaign's widget: it renders, links to the campaign, and sets no cookie."""
    import functools
    import http.server
    import threading

    server = journey.server
    slug = "riverside-warehouse-strike-fund"
    page_file = tmp_path / "union.html"
    page_file.write_text(
        "<!doctype html><html lang='en'><head><title>Our union</title></head><body>"
        "<h1>Support the pickers</h1>"
        f"<iframe src='{server.url}/c/{slug}/embed?lang=de' width='360' height='280' "
        "title='Strike fund widget'></iframe></body></html>"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    union = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=union.serve_forever, daemon=True).start()
    try:
        page = journey.page
        page.goto(f"http://localhost:{union.server_port}/union.html")
        frame = page.frame_locator("iframe[title='Strike fund widget']")
        expect(frame.get_by_role("heading", name="Strike fund for the Riverside")).to_be_visible()
        expect(frame.get_by_role("link", name="Diese Kampagne unterstützen")).to_have_attribute(
            "href", f"{server.url}/c/{slug}"
        )
        journey.shoot("union-site-with-widget")
        assert journey.context.cookies(server.url) == []
        widget_requests = [
            url for _page, url in journey.requests if "/c/" in url or "/static/" in url
        ]
        assert widget_requests and all(url.startswith(server.url) for url in widget_requests)
    finally:
        union.shutdown()
        union.server_close()
    journey.visited.clear()  # the union's page is theirs to fit on a phone


def test_11_an_organizer_connects_the_unions_systems(journey):
    """The strike committee adds a webhook for its union's membership system, sends a
    test event that the system receives signed, and creates a read-only API token
    that its system then uses; the API reference is one click away."""
    import http.server
    import threading

    from standardwebhooks import Webhook

    received: list[tuple[dict, bytes]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(
                (dict(self.headers), self.rfile.read(int(self.headers["Content-Length"])))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    union = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=union.serve_forever, daemon=True).start()
    page, base = journey.page, journey.server.url
    try:
        _log_in(page, base, "organizer@example.org", DEMO_PASSWORD)
        journey.go("/c/riverside-warehouse-strike-fund")
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_label("Address (https://…)").fill(f"http://127.0.0.1:{union.server_port}/in")
        page.get_by_label("A pledge is made").check()
        page.get_by_role("button", name="Add the webhook").click()
        expect(page.get_by_text("Webhook added.")).to_be_visible()
        secret = page.locator("section.webhook code").nth(1).inner_text()
        page.get_by_role("button", name="Send a test event").click()
        expect(page.get_by_role("cell", name="delivered")).to_be_visible()
        journey.axe("webhooks")
        journey.shoot("webhooks")
        [(headers, body)] = received
        assert Webhook(secret).verify(body, headers)["type"] == "test"

        page.get_by_role("link", name="Account", exact=True).click()
        page.get_by_role("link", name="API tokens for your campaigns").click()
        page.get_by_label("Name", exact=True).fill("membership system")
        page.get_by_label("Read backers' chosen names and messages (never their addresses)").check()
        page.get_by_role("button", name="Create the token").click()
        token = page.locator("pre code").inner_text()
        journey.axe("tokens")
        journey.shoot("token-created")
        answer = page.request.get(
            f"{base}/api/v1/organizer/campaigns/riverside-warehouse-strike-fund/backers",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.ok and "@" not in answer.text() and answer.json()["backers"]
        page.get_by_role("link", name="API reference").click()
        expect(page.get_by_role("heading", name="API reference")).to_be_visible()
        journey.axe("api-reference")
        journey.shoot("api-reference")
    finally:
        union.shutdown()
        union.server_close()
    journey.assert_no_third_party_requests()

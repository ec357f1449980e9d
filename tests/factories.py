"""Builders for tests, in one module: people (registered and logged in through the
real forms and emails), campaigns (through the organizer's forms, or seeded directly
for settlement), pledges (through the pledge form with the simulated card) and the
settlement clock. Tests import from here, never from conftest (which holds fixtures).
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from accounts.models import User
from campaigns.models import BudgetLine, Campaign, Organizer
from core import clock, outbox
from core.clock import utcnow
from core.extensions import db
from core.money import Money, MoneyError
from core.urls import public_request_context
from ledger.models import LedgerPosting, LedgerTransaction
from payments import services
from payments.backends import get_backend
from payments.models import Pledge

# ---- People and forms ---------------------------------------------------------

CSRF_PATTERN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(client, url: str) -> str:
    page = client.get(url)
    match = CSRF_PATTERN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} (status {page.status_code})"
    return match.group(1)


def submit(client, url: str, data: dict, *, form_page: str | None = None, **kwargs):
    """POST a form the way a browser does: with the CSRF token of the page showing it."""
    return client.post(
        url, data={"csrf_token": csrf_token(client, form_page or url), **data}, **kwargs
    )


DEFAULT_PASSWORD = "correct horse battery staple"


def mail_to(app, address: str) -> list[str]:
    """The .eml files the outbox wrote to `address`, oldest first."""
    folder = Path(app.config["OUTBOX_FOLDER"])
    if not folder.exists():
        return []
    found = []
    for path in sorted(folder.glob("*.eml")):
        text = path.read_text()
        if re.search(rf"^To: {re.escape(address)}$", text, re.MULTILINE):
            found.append(text)
    return found


def link_in(mail: str, path_prefix: str) -> str:
    """The path of the first link in `mail` under `path_prefix`."""
    match = re.search(rf"https?://[^/\s]+({re.escape(path_prefix)}\S+)", mail)
    assert match, f"no {path_prefix} link in:\n{mail}"
    return match.group(1)


def register(client, email="ada@example.org", name="Ada", password=DEFAULT_PASSWORD):
    """Register as a person does: the form, then the link in the confirmation email
    (which logs them in). Returns the confirmation link's response (a redirect)."""
    response = submit(
        client,
        "/register",
        {
            "email": email,
            "display_name": name,
            "password": password,
            "confirm": password,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert "Check your inbox" in response.get_data(as_text=True)
    with client.application.app_context():
        outbox.deliver_pending()  # under RQ (no worker in tests), as the worker would
    mails = mail_to(client.application, email.lower())
    [mail] = [m for m in mails if "/register/confirm/" in m][-1:]
    response = client.get(link_in(mail, "/register/confirm/"))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return response


def login(client, email="ada@example.org", password=DEFAULT_PASSWORD):
    return submit(client, "/login", {"email": email, "password": password})


def logout(client):
    return submit(client, "/logout", {}, form_page="/account")


# ---- Campaigns -------------------------------------------------------------


def deadline_in(days: float = 30) -> str:
    return (utcnow() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def campaign_form(**overrides) -> dict:
    data = {
        "title": "Strike fund for the bakery workers",
        "slug": "",
        "summary": "Sixty bakers on strike for a union contract.",
        "story": "## Why\n\nThe night shift has had **no raise** in six years.",
        "kind": "strike_fund",
        "language": "en",
        "currency": "EUR",
        "goal": "5000.50",
        "min_backers": "",
        "funding_model": "all_or_nothing",
        "deadline": deadline_in(30),
        "budget_lines-0-item": "Strike pay",
        "budget_lines-0-amount": "4000",
        "budget_lines-0-required": "y",
        "budget_lines-1-item": "Legal observer",
        "budget_lines-1-amount": "1000.50",
        "budget_note": "",
        "sources-0-title": "Strike ballot result",
        "sources-0-url": "https://example.org/ballot",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def create_draft(client, headers=None, **overrides):
    form = campaign_form(**overrides)
    return submit(client, "/campaigns/new", form, headers=headers)


def launch(client, slug: str):
    return submit(client, f"/c/{slug}/launch", {}, form_page=f"/c/{slug}")


def join_committee(owner, member, slug: str, email: str, role: str):
    """The owner invites `email`; `member` (logged in with that address) opens the
    emailed link and accepts. Returns the accept response (a redirect)."""
    response = submit(owner, f"/c/{slug}/team", {"email": email, "role": role})
    assert response.status_code == 302, response.get_data(as_text=True)[:1000]
    [mail] = [m for m in mail_to(owner.application, email) if "/invitations/" in m][-1:]
    link = link_in(mail, "/invitations/")
    return submit(member, link, {})


def launched(client, slug: str) -> str:
    """Launch a draft; returns its public address (drafts live at private ones)."""
    response = launch(client, slug)
    assert response.status_code == 302
    return response.headers["Location"].rsplit("/", 1)[-1]


# ---- Pledges ---------------------------------------------------------------

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


# ---- Settlements -----------------------------------------------------------

GOOD = "4242424242424242"
DECLINE_ON_CHARGE = "4000000000000341"
NEEDS_AUTH = "4000002760003184"
NO_FUNDS = "4000000000009995"


def make_campaign(app, *, goal=100, min_backers=None, model="all_or_nothing", days=10) -> int:
    with app.app_context():
        user = User(
            email=f"{secrets.token_hex(4)}@example.org", display_name="Org", password_hash="x"
        )
        db.session.add(user)
        db.session.flush()
        campaign = Campaign(
            slug="c-" + secrets.token_hex(4),
            title="A campaign",
            summary="s",
            story="s",
            kind="strike_fund",
            currency="EUR",
            goal_amount=goal * 100,
            min_backers=min_backers,
            funding_model=model,
            deadline=utcnow() + timedelta(days=days),
            status="live",
            launched_at=utcnow(),
        )
        campaign.organizers = [Organizer(user_id=user.id, role="owner")]
        campaign.budget_lines = [
            BudgetLine(position=0, label="x", amount=goal * 100, required=True)
        ]
        db.session.add(campaign)
        db.session.commit()
        return campaign.id


def add_pledges(app, campaign_id, cards_and_amounts, every_period=False) -> list[int]:
    """Real pledges through the simulated provider; amounts in whole euros
    (`every_period`: standing pledges to a recurring campaign)."""
    ids = []
    with app.app_context(), public_request_context():
        campaign = db.session.get(Campaign, campaign_id)
        for n, (card, units) in enumerate(cards_and_amounts):
            pledge, _ = services.start_pledge(
                campaign,
                amount=Money.from_major(units, "EUR"),
                submission_key=secrets.token_urlsafe(20),
                guest_email=f"supporter{n}@example.org",
                every_period=every_period,
            )
            session = services.start_card_setup(pledge)
            saved = get_backend().provider.confirm_setup(session.setup_id, card)
            services.card_saved(pledge, saved)
            db.session.commit()
            ids.append(pledge.id)
    return ids


def past_deadline(app, campaign_id, extra=timedelta(minutes=1)) -> None:
    with app.app_context():
        deadline = db.session.get(Campaign, campaign_id).deadline
    clock.freeze(deadline + extra)


def run_sweep(app) -> None:
    from payments.jobs import sweep

    with app.app_context(), public_request_context():
        sweep()


def campaign(app, campaign_id) -> Campaign:
    with app.app_context():
        return db.session.get(Campaign, campaign_id)


def pledge_states(app, campaign_id) -> dict[int, str]:
    with app.app_context():
        return dict(
            db.session.execute(
                select(Pledge.id, Pledge.status).where(Pledge.campaign_id == campaign_id)
            ).all()
        )


def provider_charges(app, pledge_ids) -> dict[int, int]:
    """How many successful charges the provider holds per pledge."""
    provider = app.extensions["payment_backend"].provider
    with app.app_context():
        refs = dict(
            db.session.execute(
                select(Pledge.id, Pledge.public_id).where(Pledge.id.in_(pledge_ids))
            ).all()
        )
    return {pid: len(provider.charges_for(ref)) for pid, ref in refs.items()}


def ledger_balance(app, account) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.coalesce(func.sum(LedgerPosting.amount), 0)).where(
                LedgerPosting.account == account
            )
        )


def ledger_count(app, kind=None) -> int:
    with app.app_context():
        query = select(func.count(LedgerTransaction.id))
        if kind:
            query = query.where(LedgerTransaction.kind == kind)
        return db.session.scalar(query)


# ---- What a browser sends ---------------------------------------------------------


def browser_form(page: str, containing: str) -> dict[str, list[str]]:
    """The fields a browser would submit from the POST form of `page` that has a field
    named `containing`, as rendered: text inputs and hidden ones with their values,
    checked boxes and radios, selected options and textareas; nothing the page does
    not show. File inputs are left out (no file chosen)."""
    from html.parser import HTMLParser

    class Collector(HTMLParser):
        def __init__(self):
            super().__init__()
            self.forms: list[list[tuple[str, str]]] = []
            self.inside = False
            self.select: str | None = None
            self.textarea: str | None = None
            self.text = ""

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "form" and (a.get("method") or "").lower() == "post":
                self.forms.append([])
                self.inside = True
            if not self.inside:
                return
            name = a.get("name")
            if tag == "input" and name and a.get("type") not in ("file", "submit", "button"):
                if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                    return
                default = "y" if a.get("type") == "checkbox" else ""
                self.forms[-1].append((name, a.get("value") or default))
            elif tag == "select" and name:
                self.select = name
            elif tag == "option" and self.select and "selected" in a:
                self.forms[-1].append((self.select, a.get("value") or ""))
            elif tag == "textarea" and name:
                self.textarea, self.text = name, ""

        def handle_data(self, data):
            if self.textarea:
                self.text += data

        def handle_endtag(self, tag):
            if tag == "form":
                self.inside = False
            elif tag == "select":
                self.select = None
            elif tag == "textarea" and self.textarea:
                self.forms[-1].append((self.textarea, self.text.removeprefix("\n")))
                self.textarea = None

    collector = Collector()
    collector.feed(page)
    [form] = [f for f in collector.forms if any(name == containing for name, _ in f)]
    fields: dict[str, list[str]] = {}
    for name, value in form:
        fields.setdefault(name, []).append(value)
    return fields

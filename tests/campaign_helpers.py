from __future__ import annotations

from datetime import timedelta

from core.clock import utcnow
from tests.conftest import submit


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
    from tests.conftest import link_in, mail_to

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

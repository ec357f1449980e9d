"""The markup every page sends, crawled as its visitors see it: each id once per page,
and every label, description and control reference pointing at an element that is
there. Assistive technology follows these ids; a duplicate makes `for=` and
`aria-describedby` name whichever element comes first (found by pa11y on the demo:
a page's own form and the header's log-out form both drew `id="csrf_token"`)."""

from __future__ import annotations

import re
from collections import Counter, deque
from html.parser import HTMLParser
from urllib.parse import parse_qs, urldefrag, urlsplit

import pytest
from sqlalchemy import select, update

from accounts.models import User
from campaigns.demo import DEMO_PASSWORD
from core.extensions import db
from tests.factories import login

REFERENCES = ("for", "aria-describedby", "aria-labelledby", "aria-controls")
NOT_PAGES = (".csv", ".json", ".zip", ".atom", ".svg", ".txt", ".xml")
PAGES_PER_VISITOR = 300
SAME_SHAPE = 3  # pages crawled per shape: numbers as N (/ledger/entry/N, /rounds/N/manage)


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, id)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id") is not None:
            self.ids.append(attributes["id"])
        for name in REFERENCES:
            for target in (attributes.get(name) or "").split():
                self.references.append((tag, name, target))
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])


def _problems(html: str) -> tuple[list[str], list[str], list[str]]:
    """(ids drawn twice, references to no element, link targets) of one page."""
    markup = _Markup()
    markup.feed(html)
    counts = Counter(markup.ids)
    duplicates = sorted(f'id="{i}" {n} times' for i, n in counts.items() if n > 1)
    dangling = sorted(
        {
            f'<{tag} {name}="{target}">'
            for tag, name, target in markup.references
            if target not in counts
        }
    )
    return duplicates, dangling, markup.links


def _crawl(client, starts: list[str]) -> tuple[dict[str, list[str]], set[str]]:
    """Problems by page, for the pages of this site reachable by links from `starts`
    (a few of each shape); and the pages visited."""
    seen: set[str] = set(starts)
    shapes: Counter[str] = Counter()
    queue = deque(starts)
    found: dict[str, list[str]] = {}
    visited: set[str] = set()
    while queue and len(visited) < PAGES_PER_VISITOR:
        path = queue.popleft()
        response = client.get(path)
        visited.add(path)
        page = response.get_data(as_text=True) if response.mimetype == "text/html" else ""
        response.close()  # files (receipts, covers) are sent from open file handles
        if response.status_code != 200 or not page:
            continue
        duplicates, dangling, links = _problems(page)
        if duplicates or dangling:
            found[path] = duplicates + [f"refers to nothing: {d}" for d in dangling]
        for href in links:
            link = urldefrag(href).url
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not link.startswith("/"):
                continue
            if link.startswith(("/static/", "/media/", "/logout")) or parts.path.endswith(
                NOT_PAGES
            ):
                continue
            shape = re.sub(r"\d+", "N", parts.path) + "?" + ",".join(sorted(parse_qs(parts.query)))
            if link not in seen and shapes[shape] < SAME_SHAPE:
                seen.add(link)
                shapes[shape] += 1
                queue.append(link)
    assert len(visited) > 10, f"the crawl from {starts} reached only {visited}"
    return found, visited


def _manage_pages(app) -> list[str]:
    """One pledge page of each kind the demo has: each status, one-off or standing,
    a period's charge or not (pledges made without an account open by their link)."""
    from payments.models import Pledge
    from payments.services import manage_url

    with app.test_request_context():
        pages = {}
        for row in db.session.scalars(select(Pledge).where(Pledge.user_id.is_(None))):
            kind = (row.status, row.recurring, row.parent_id is None)
            pages.setdefault(kind, manage_url(row))
    assert len(pages) >= 5, pages
    return list(pages.values())


@pytest.fixture
def demo(app):
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        # One organizer also moderates, so the moderation pages are crawled too.
        db.session.execute(
            update(User).where(User.email == "council@example.org").values(is_moderator=True)
        )
        db.session.commit()
    return app


@pytest.mark.parametrize(
    "visitor",
    [
        None,
        "organizer@example.org",
        "treasurer@example.org",
        "cleaners@example.org",
        "council@example.org",
    ],
)
def test_every_page_names_each_id_once_and_refers_to_ids_it_has(demo, visitor):
    client = demo.test_client()
    starts = ["/", "/campaigns", "/ledger", "/rounds"]
    if visitor is None:  # a supporter's own pages, reached by the emailed link
        starts += _manage_pages(demo)
    if visitor:
        login(client, visitor, DEMO_PASSWORD)
        starts += ["/dashboard", "/account", "/account/tokens", "/campaigns/new", "/moderation/"]
    problems, visited = _crawl(client, starts)
    if visitor == "council@example.org":  # runs both demo rounds, moderates
        assert {"/rounds/1/manage", "/rounds/2/manage", "/moderation/"} <= visited
    assert not problems, "\n".join(
        f"{page}: {'; '.join(found)}" for page, found in problems.items()
    )


def test_the_check_itself_sees_a_duplicate_and_a_reference_to_nothing():
    page = '<input id="a"><input id="a"><label for="b">B</label><p aria-describedby="a c">'
    duplicates, dangling, _ = _problems(page)
    assert duplicates == ['id="a" 2 times']
    assert dangling == ['<label for="b">', '<p aria-describedby="c">']

"""Public pages cached for anonymous visitors (issue 17) are never older than the last
committed write: a pledge, an update, a settlement and a ledger entry each change what
the next anonymous request sees. Logged-in visitors, visitors with a message waiting
and responses that set a cookie are never served from, nor stored in, the cache."""

from __future__ import annotations

import pytest
import redis

from core.extensions import db
from core.money import Money
from ledger.models import EntryKind
from tests.factories import (
    GOOD,
    add_pledges,
    campaign,
    live_campaign,
    login,
    make_campaign,
    past_deadline,
    pledge,
    run_sweep,
    submit,
)


def _seen(client, path) -> tuple[str, str | None]:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True), response.headers.get("X-Page-Cache")


def _warm(client, path) -> str:
    """Fetch until the page comes from the cache (a background sweep may write once)."""
    for _ in range(4):
        html, state = _seen(client, path)
        if state == "hit":
            return html
    pytest.fail(f"{path} was never served from the cache")


def test_a_pledge_changes_the_next_anonymous_campaign_page_listing_and_api(app):
    slug = live_campaign(app)
    visitor = app.test_client()
    paths = (f"/c/{slug}", "/campaigns", f"/api/v1/campaigns/{slug}", "/")
    before = {path: _warm(visitor, path) for path in paths}
    assert "€25.00" not in before[f"/c/{slug}"]
    assert pledge(app.test_client(), slug, amount="25").status_code == 302
    for path in paths:
        html, state = _seen(visitor, path)
        assert state == "miss", path
        assert html != before[path], path
    assert "€25.00" in _seen(visitor, f"/c/{slug}")[0]
    assert visitor.get(f"/api/v1/campaigns/{slug}").get_json()["pledged"]["amount"] == 2500


def test_an_update_changes_the_next_anonymous_campaign_page(app):
    slug = live_campaign(app)
    visitor = app.test_client()
    assert "Day one on the picket" not in _warm(visitor, f"/c/{slug}")
    organizer = app.test_client()
    login(organizer, email="org@example.org")
    response = submit(
        organizer, f"/c/{slug}/updates/new", {"title": "Day one on the picket", "body": "Strong."}
    )
    assert response.status_code == 302
    html, state = _seen(visitor, f"/c/{slug}")
    assert state == "miss" and "Day one on the picket" in html


def test_settlement_changes_the_next_anonymous_campaign_page_and_ledger(app):
    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, [(GOOD, 30)])
    slug = campaign(app, cid).slug
    visitor = app.test_client()
    page = _warm(visitor, f"/c/{slug}")
    ledger_page = _warm(visitor, "/ledger")
    past_deadline(app, cid)
    run_sweep(app)
    assert campaign(app, cid).status == "settled"
    html, state = _seen(visitor, f"/c/{slug}")
    assert state == "miss" and html != page and "€30.00" in html
    html, state = _seen(visitor, "/ledger")
    assert state == "miss" and html != ledger_page and "€30.00" in html


def test_a_ledger_entry_changes_the_next_anonymous_ledger_pages(app):
    from ledger.services import campaign_account, record

    cid = make_campaign(app, goal=10)
    slug = campaign(app, cid).slug
    visitor = app.test_client()
    assert "platform gift for the page cache" not in _warm(visitor, "/ledger")
    _warm(visitor, f"/c/{slug}/ledger")
    with app.app_context():
        record(
            EntryKind.ADJUSTMENT,
            campaign_id=cid,
            reference="page-cache-test",
            postings=[
                ("platform", Money(-700, "EUR")),
                (campaign_account(cid), Money(700, "EUR")),
            ],
            counterparty="platform",
            memo="platform gift for the page cache",
        )
        db.session.commit()
    for path in ("/ledger", f"/c/{slug}/ledger"):
        html, state = _seen(visitor, path)
        assert state == "miss" and "€7.00" in html, path


def test_logged_in_and_flashed_visitors_are_never_served_or_stored(app):
    from tests.factories import register

    slug = live_campaign(app)
    member = app.test_client()
    register(member, email="member@example.org", name="Member Only Name")
    for _ in range(3):
        html, state = _seen(member, f"/c/{slug}")
        assert state is None and "Log out" in html
    visitor = app.test_client()
    html = _warm(visitor, f"/c/{slug}")
    assert "Log out" not in html
    # A response that sets a cookie (the pledge form's CSRF session) is never stored.
    form = visitor.get(f"/c/{slug}/pledge")
    assert form.headers.get("X-Page-Cache") is None


def test_a_forged_host_gets_a_400_even_for_a_cached_page(app):
    slug = live_campaign(app)
    visitor = app.test_client()
    _warm(visitor, f"/c/{slug}")
    forged = visitor.get(f"/c/{slug}", headers={"Host": "evil.example"})
    assert forged.status_code == 400


def test_with_redis_a_write_in_one_process_refreshes_another_processes_pages(make_app, redis_url):
    """Two app instances share Redis as two gunicorn workers (or a worker and a CLI
    command) do: a pledge through one is seen at once through the other."""
    first = make_app(REDIS_URL=redis_url)
    second = make_app(REDIS_URL=redis_url)
    slug = live_campaign(first)
    visitor = second.test_client()
    _warm(visitor, f"/c/{slug}")
    assert pledge(first.test_client(), slug, amount="40").status_code == 302
    html, state = _seen(visitor, f"/c/{slug}")
    assert state == "miss" and "€40.00" in html


def test_with_redis_down_pages_are_rendered_and_writes_go_through(make_app):
    """Nothing listens on port 1: every cache call fails, and nobody notices but the
    log (pages rendered each time, the pledge saved, its total shown at once)."""
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", RATELIMIT_ENABLED=False)
    slug = live_campaign(app)
    visitor = app.test_client()
    for _ in range(2):
        _html, state = _seen(visitor, f"/c/{slug}")
        assert state is None
    assert pledge(app.test_client(), slug, amount="25").status_code == 302
    assert "€25.00" in _seen(visitor, f"/c/{slug}")[0]


def test_stored_pages_are_served_in_each_visitors_own_language(app):
    """Hits are served before Flask picks a language: the Accept-Language header alone
    must choose the stored page, as select_locale does for a visitor without a session."""
    slug = live_campaign(app)
    visitors = {
        "de-DE,de;q=0.9": "Kampagnen",
        "es": "Campañas",
        "en-GB,en;q=0.8": "Campaigns",
        "tlh, *;q=0.1": "Campaigns",
    }
    for _round in range(2):  # the first fills the cache, the second is all hits
        for accept, word in visitors.items():
            response = app.test_client().get(f"/c/{slug}", headers={"Accept-Language": accept})
            assert response.status_code == 200
            assert f">{word}<" in response.get_data(as_text=True), accept
    hit = app.test_client().get(f"/c/{slug}", headers={"Accept-Language": "de"})
    assert hit.headers["X-Page-Cache"] == "hit" and "Kampagnen" in hit.get_data(as_text=True)


def test_a_stored_page_keeps_its_headers_and_answers_head_without_a_body(app):
    slug = live_campaign(app)
    visitor = app.test_client()
    first = visitor.get(f"/c/{slug}")
    _warm(visitor, f"/c/{slug}")
    hit = visitor.get(f"/c/{slug}")
    assert hit.headers["X-Page-Cache"] == "hit"
    for header in ("Content-Security-Policy", "X-Frame-Options", "Content-Type"):
        assert hit.headers.get(header) == first.headers.get(header), header
    # A shared cache on the way must not give the anonymous page to a member, nor
    # one language's page to another's reader.
    assert {"Cookie", "Accept-Language"} <= set(hit.headers["Vary"].replace(" ", "").split(","))
    head = visitor.head(f"/c/{slug}")
    assert head.status_code == 200 and head.headers["X-Page-Cache"] == "hit"
    assert head.get_data() == b"" and head.headers["Content-Length"] == str(len(hit.get_data()))


def test_behind_a_proxy_stored_pages_are_served_and_forged_hosts_still_refused(make_app):
    app = make_app(
        PROXY_FIX_X_FOR=1,
        PUBLIC_URL="https://fund.example.org",
        TRUSTED_HOSTS=["fund.example.org", "localhost"],
    )
    slug = live_campaign(app)
    visitor = app.test_client()
    proxied = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    for _ in range(2):
        response = visitor.get(
            f"/c/{slug}", headers={**proxied, "Host": "fund.example.org"}, base_url="http://x"
        )
        assert response.status_code == 200
    assert response.headers["X-Page-Cache"] == "hit"
    forged = visitor.get(f"/c/{slug}", headers={**proxied, "Host": "evil.example"})
    assert forged.status_code == 400


@pytest.mark.parametrize("in_redis", [False, True], ids=["in-process", "redis"])
def test_api_hits_and_renderings_share_one_rate_limit_budget(make_app, redis_url, in_redis):
    """A cached API answer is served before Flask-Limiter runs; it must still count
    against the client's API budget, in the same counter, or a scraper of cached
    pages would never meet the limit."""
    shared = {"REDIS_URL": redis_url, "RATELIMIT_STORAGE_URI": redis_url} if in_redis else {}
    app = make_app(API_RATE_LIMIT="6 per minute", **shared)
    slug = live_campaign(app)
    client = app.test_client()
    remaining, states = [], []
    for n, path in enumerate((f"/api/v1/campaigns/{slug}",) * 4 + ("/api/v1/campaigns",) * 2):
        if in_redis and n == 3:  # a restarted Redis has forgotten the counting script
            redis.Redis.from_url(redis_url).script_flush()
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["X-RateLimit-Limit"] == "6"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        states.append(response.headers.get("X-Page-Cache"))
    assert "hit" in states and "miss" in states
    assert remaining == [5, 4, 3, 2, 1, 0]
    spent = client.get(f"/api/v1/campaigns/{slug}")
    assert spent.status_code == 429 and spent.headers.get("X-Page-Cache") is None
    assert int(spent.headers["Retry-After"]) > 0
    other_client = client.get(f"/api/v1/campaigns/{slug}", environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert other_client.status_code == 200 and other_client.headers["X-Page-Cache"] == "hit"
    assert other_client.headers["X-RateLimit-Remaining"] == "5"


def test_a_conditional_api_request_still_gets_its_304(app):
    slug = live_campaign(app)
    client = app.test_client()
    _warm(client, f"/api/v1/campaigns/{slug}")
    etag = client.get(f"/api/v1/campaigns/{slug}").headers["ETag"]
    again = client.get(f"/api/v1/campaigns/{slug}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""


def test_with_redis_down_rate_limited_routes_still_answer_and_limit(make_app):
    """Found from outside: with the limiter's Redis unreachable, every rate-limited
    route (the API, pledge forms) answered 500. The limits fall back to each process's
    memory until Redis is back."""
    down = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app = make_app(REDIS_URL=down, RATELIMIT_STORAGE_URI=down, API_RATE_LIMIT="3 per minute")
    slug = live_campaign(app)
    client = app.test_client()
    answers = [client.get(f"/api/v1/campaigns/{slug}") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert pledge(app.test_client(), slug, amount="12").status_code == 302


class _Abandoned(Exception):
    pass


def _renamed(app, slug: str, title: str):
    from sqlalchemy import select

    from campaigns.models import Campaign

    row = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
    row.title = title
    db.session.flush()


@pytest.mark.parametrize("in_redis", [False, True], ids=["in-process", "redis"])
def test_a_savepoint_that_fails_does_not_hide_the_write_before_it(make_app, redis_url, in_redis):
    """A transaction writes a public row, then tries something in a savepoint that is
    rolled back (a duplicate opt-out, a balance row a parallel writer created), then
    commits: its write is public, so the next anonymous page must show it. The
    savepoint's rollback used to clear the transaction's "wrote a public row" mark."""
    app = make_app(**({"REDIS_URL": redis_url} if in_redis else {}))
    slug = live_campaign(app)
    visitor = app.test_client()
    _warm(visitor, f"/c/{slug}")
    with app.app_context():
        _renamed(app, slug, "Renamed before a savepoint that failed")
        with pytest.raises(_Abandoned), db.session.begin_nested():
            raise _Abandoned
        db.session.commit()
    html, state = _seen(visitor, f"/c/{slug}")
    assert state == "miss" and "Renamed before a savepoint that failed" in html


@pytest.mark.parametrize("in_redis", [False, True], ids=["in-process", "redis"])
def test_a_write_in_a_savepoint_refreshes_pages_when_its_transaction_commits(
    make_app, redis_url, in_redis
):
    """Releasing a savepoint commits nothing: a page rendered between the release and the
    transaction's commit shows the old row, so it must not be stored as the page after
    the write (the version moved at the release, and not again at the commit)."""
    app = make_app(**({"REDIS_URL": redis_url} if in_redis else {}))
    slug = live_campaign(app)
    visitor = app.test_client()
    _warm(visitor, f"/c/{slug}")
    with app.app_context():
        with db.session.begin_nested():
            _renamed(app, slug, "Renamed in a savepoint")
        meanwhile, _state = _seen(visitor, f"/c/{slug}")
        assert "Renamed in a savepoint" not in meanwhile  # not committed yet
        db.session.commit()
    html, state = _seen(visitor, f"/c/{slug}")
    assert state == "miss" and "Renamed in a savepoint" in html

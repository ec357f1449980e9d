"""What every public API endpoint shares (core/api.py), from outside: validators and
304s, caching, CORS for public GETs only, problem+json errors, rate-limit headers,
and cursor pagination that visits every item once while items are added."""

from __future__ import annotations

import secrets

from campaigns.models import Campaign
from core.extensions import db
from core.money import Money
from core.urls import public_request_context
from payments import services
from payments.backends import get_backend
from tests.factories import GOOD, make_campaign


def _supporters(app, campaign_id, names) -> None:
    with app.app_context(), public_request_context():
        campaign = db.session.get(Campaign, campaign_id)
        for name in names:
            made, _ = services.start_pledge(
                campaign,
                amount=Money(500, "EUR"),
                submission_key=secrets.token_urlsafe(20),
                guest_email=f"{name}@example.org",
                visibility="pseudonym",
                public_name=name,
            )
            session = services.start_card_setup(made)
            services.card_saved(made, get_backend().provider.confirm_setup(session.setup_id, GOOD))
            db.session.commit()


def _slug(app, campaign_id) -> str:
    with app.app_context():
        return db.session.get(Campaign, campaign_id).slug


def test_an_unchanged_answer_is_a_304_and_a_change_a_new_etag(app, client):
    cid = make_campaign(app)
    url = f"/api/v1/campaigns/{_slug(app, cid)}"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag
    assert first.headers["Cache-Control"] == "public, max-age=30"
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    _supporters(app, cid, ["first backer"])
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.get_json()["backers"] == 1
    checkpoint = client.get("/api/v1/ledger/checkpoint")
    assert (
        client.get(
            "/api/v1/ledger/checkpoint", headers={"If-None-Match": checkpoint.headers["ETag"]}
        ).status_code
        == 304
    )


def test_a_cursor_walk_sees_every_supporter_once_while_more_pledge(app, client):
    cid = make_campaign(app)
    slug = _slug(app, cid)
    _supporters(app, cid, [f"early {n}" for n in range(7)])
    seen: list[str] = []
    url = f"/api/v1/campaigns/{slug}/supporters?per_page=3"
    late = 0
    while url:
        body = client.get(url).get_json()
        seen += [s["name"] for s in body["supporters"]]
        _supporters(app, cid, [f"late {late}"])  # someone pledges between two pages
        late += 1
        url = body["next"] and body["next"].replace("http://127.0.0.1:5000", "")
    # Newest first: those who pledged during the walk come before the cursor, so the
    # walk sees each early supporter exactly once and none of the late ones.
    assert sorted(seen) == sorted(f"early {n}" for n in range(7))


def test_a_cursor_walk_of_campaigns_sees_each_once_while_more_launch(app, client):
    ids = [make_campaign(app, days=d) for d in range(2, 9)]
    seen: list[str] = []
    url = "/api/v1/campaigns?sort=ending&per_page=2"
    body = client.get(url).get_json()
    seen += [c["slug"] for c in body["campaigns"]]
    cursor = body["next_cursor"]
    while cursor:
        make_campaign(app, days=30)  # launched meanwhile, ends last
        body = client.get(f"/api/v1/campaigns?sort=ending&per_page=2&cursor={cursor}").get_json()
        seen += [c["slug"] for c in body["campaigns"]]
        cursor = body["next_cursor"]
    assert len(seen) == len(set(seen))
    assert {_slug(app, i) for i in ids} <= set(seen)
    first = client.get("/api/v1/campaigns?sort=ending&per_page=2").get_json()["next_cursor"]
    assert client.get(f"/api/v1/campaigns?sort=backers&cursor={first}").status_code == 400


def test_cors_is_for_public_gets_only(app, client):
    cid = make_campaign(app)
    public = client.get(f"/api/v1/campaigns/{_slug(app, cid)}", headers={"Origin": "https://x.org"})
    assert public.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in public.headers["Access-Control-Expose-Headers"]
    preflight = client.options("/api/v1/campaigns", headers={"Origin": "https://x.org"})
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    page = client.get(f"/c/{_slug(app, cid)}", headers={"Origin": "https://x.org"})
    assert "Access-Control-Allow-Origin" not in page.headers


def test_errors_are_problem_details_with_a_clear_detail(client):
    missing = client.get("/api/v1/campaigns/no-such-campaign")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    body = missing.get_json(force=True)
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert body["detail"] == "no public campaign has that slug"
    bad = client.get("/api/v1/campaigns?per_page=10000")
    assert bad.status_code == 400 and "per_page" in bad.get_json(force=True)["detail"]
    assert bad.headers["Access-Control-Allow-Origin"] == "*"
    cursor = client.get("/api/v1/campaigns?cursor=%%%")
    assert cursor.status_code == 400


def test_api_answers_announce_their_rate_limit(app):
    limited = app.test_client()
    response = limited.get("/api/v1/rounds")
    assert response.headers["X-RateLimit-Limit"] == "300"
    assert int(response.headers["X-RateLimit-Remaining"]) < 300


def test_found_by_schemathesis_a_405_names_the_allowed_methods(client):
    """RFC 9110: a 405 carries Allow (the problem+json rewrite had dropped it)."""
    response = client.delete("/api/v1/rounds")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.mimetype == "application/problem+json"


def test_found_by_schemathesis_an_empty_number_is_refused_by_the_api(client):
    """`per_page=` is not a number: the API says so instead of using the default."""
    for url in (
        "/api/v1/ledger/entries?start=",
        "/api/v1/campaigns?per_page=",
        "/api/v1/campaigns?per_page=1&per_page=2",
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert "whole number" in response.get_json(force=True)["detail"]

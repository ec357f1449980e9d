from datetime import timedelta

import pytest
from sqlalchemy import text

from campaigns.demo import CAMPAIGNS, PAST_CAMPAIGNS, RECURRING_CAMPAIGNS, load_demo
from campaigns.models import CampaignKind
from core import clock
from core.extensions import db
from tests.factories import create_draft, register

FIELDS = {
    "slug",
    "title",
    "summary",
    "kind",
    "status",
    "language",
    "funding_model",
    "goal",
    "pledged",
    "backers",
    "min_backers",
    "deadline",
    "url",
}


@pytest.fixture
def demo(app):
    with app.app_context():
        load_demo()
        db.session.commit()


def test_campaign_list_is_paginated_with_the_documented_fields(app, client, demo):
    body = client.get("/api/v1/campaigns?per_page=2").get_json()
    demo_campaigns = len(CAMPAIGNS) + len(PAST_CAMPAIGNS) + len(RECURRING_CAMPAIGNS)
    assert body["total"] == demo_campaigns and body["page"] == 1 and len(body["campaigns"]) == 2
    assert body["next"] and body["previous"] is None
    campaign = body["campaigns"][0]
    assert set(campaign) == FIELDS
    assert set(campaign["goal"]) == {"amount", "currency"}
    assert campaign["pledged"]["amount"] == 0 and campaign["backers"] == 0
    assert campaign["deadline"].endswith("Z")
    seen = {c["slug"] for c in body["campaigns"]}
    while body["next"]:
        body = client.get(body["next"]).get_json()
        seen |= {c["slug"] for c in body["campaigns"]}
    assert len(seen) == demo_campaigns


def test_single_campaign(app, client, demo):
    body = client.get("/api/v1/campaigns/riverside-warehouse-strike-fund").get_json()
    assert body["goal"] == {"amount": 4_000_000, "currency": "EUR"}
    assert body["min_backers"] == 200
    assert body["funding_model"] == "all_or_nothing"
    assert body["status"] == "live"
    assert body["url"].endswith("/c/riverside-warehouse-strike-fund")


def test_drafts_never_appear_in_the_api(app, client):
    register(client)
    slug = create_draft(client).headers["Location"].rsplit("/", 1)[-1]
    visitor = app.test_client()
    assert visitor.get(f"/api/v1/campaigns/{slug}").status_code == 404
    assert visitor.get("/api/v1/campaigns").get_json()["total"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=x",
        "per_page=101",
        "per_page=-1",
        "status=secret",
        "sort=random",
        "page=\u00b2",
        "page=\u0663",
        "per_page=\u0661\u0660",
        "page=" + "9" * 5000,
    ],
)
def test_bad_api_parameters_get_a_clear_400(app, client, query):
    response = client.get(f"/api/v1/campaigns?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json(force=True)["detail"]


def test_unknown_campaign_is_a_json_404(app, client):
    response = client.get("/api/v1/campaigns/nope")
    assert response.status_code == 404
    assert response.get_json(force=True)["detail"]


def test_demo_has_every_kind_and_loads_once(app, demo):
    with app.app_context():
        rows = db.session.execute(text("SELECT DISTINCT kind FROM campaigns")).scalars().all()
        assert set(rows) == {k.value for k in CampaignKind}
        assert load_demo() == 0


def test_demo_pages_render(app, client, demo):
    for url in [
        "/",
        "/campaigns",
        "/c/northside-winter-heating-fund",
        "/privacy",
        "/how-it-works",
        "/terms",
        "/c/northside-winter-heating-fund/updates.atom",
        "/login",
        "/register",
    ]:
        assert client.get(url).status_code == 200, url
    page = client.get("/c/northside-winter-heating-fund").get_data(as_text=True)
    assert "First heaters delivered" in page and "Electric heaters for 40 flats" in page
    assert "example.org" not in page.replace("https://example.org/", ""), "no emails on pages"


def test_healthz(app, client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}


def test_healthz_reports_an_unreachable_database(tmp_path, monkeypatch):
    from app import create_app

    monkeypatch.setenv("COUNTERFUND_INSTANCE", str(tmp_path))
    broken = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/dir/x.db"}
    )
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_security_headers(app, client):
    response = client.get("/campaigns")
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # only in production


def test_html_404_page(app, client):
    response = client.get("/c/nothing-here")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_time_left_follows_the_clock(app, client, demo):
    clock.freeze(clock.utcnow() + timedelta(days=100))
    assert client.get("/api/v1/campaigns?status=live").get_json()["total"] == 0


def test_demo_cli_loads_pledges_with_consistent_totals(app):
    from payments.demo import PLEDGES, RECURRING_PLEDGES
    from payments.models import Pledge

    made = sum(len(amounts) for amounts in [*PLEDGES.values(), *RECURRING_PLEDGES.values()])
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    assert f"{made} pledges" in result.output
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT c.pledged_amount, c.backer_count, coalesce(sum(p.amount), 0), count(p.id)"
                " FROM campaigns c LEFT JOIN pledges p ON p.campaign_id = c.id"
                " AND p.status = 'active' WHERE c.status = 'live'"
                " GROUP BY c.id, c.pledged_amount, c.backer_count"
            )
        ).all()
        assert rows and all(r[0] == r[2] and r[1] == r[3] for r in rows)
        assert len(rows) == 6
        # Besides the pledges made, one charge of each standing pledge per charged week.
        charges = db.session.query(Pledge).filter(Pledge.parent_id.is_not(None)).count()
        assert charges == 10
        assert db.session.query(Pledge).count() == made + charges
    again = app.test_cli_runner().invoke(args=["demo", "load"])
    assert "already exist" in again.output

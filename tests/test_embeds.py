"""The badge and the widget other sites embed: localised, framable (the widget only),
cookie-free, and escaped (a campaign's title is someone's input)."""

from __future__ import annotations

import re

from sqlalchemy import select

from campaigns.models import Campaign
from core.extensions import db
from tests.factories import live_campaign, pledge


def test_the_badge_shows_progress_in_the_asked_language_and_sets_no_cookie(app, client):
    slug = live_campaign(app)
    assert pledge(client, slug, amount="1234.50").status_code == 302
    english = app.test_client().get(f"/c/{slug}/badge.svg")
    assert english.status_code == 200 and english.mimetype == "image/svg+xml"
    svg = english.get_data(as_text=True)
    assert "1 backer" in svg and "€1,234.50 pledged of" in svg
    german = app.test_client().get(f"/c/{slug}/badge.svg?lang=de")
    assert "1.234,50" in german.get_data(as_text=True)
    assert "Set-Cookie" not in english.headers and "Set-Cookie" not in german.headers
    assert english.headers["Cache-Control"].startswith("public")
    assert app.test_client().get(f"/c/{slug}/badge.svg?lang=xx").status_code == 200


def test_a_hostile_title_is_escaped_in_the_badge_and_the_widget(app):
    slug = live_campaign(app)
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
        campaign.title = '</text><script>alert(1)</script>&"'
        db.session.commit()
    client = app.test_client()
    for path in (f"/c/{slug}/badge.svg", f"/c/{slug}/embed"):
        body = client.get(path).get_data(as_text=True)
        assert "<script>" not in body and "&lt;script&gt;" in body


def test_only_the_widget_may_be_framed_by_other_sites(app, client):
    slug = live_campaign(app)
    widget = app.test_client().get(f"/c/{slug}/embed?lang=pt-BR")
    assert widget.status_code == 200
    assert "frame-ancestors *" in widget.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in widget.headers and "Set-Cookie" not in widget.headers
    assert 'lang="pt-BR"' in widget.get_data(as_text=True)
    assert re.search(r'href="http://[^"]+/c/' + slug + '"', widget.get_data(as_text=True))
    page = client.get(f"/c/{slug}")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    text = page.get_data(as_text=True)
    assert "Embed this campaign" in text and f"/c/{slug}/embed" in text
    assert f"/c/{slug}/badge.svg" in text


def test_drafts_and_unknown_campaigns_have_no_badge(client):
    assert client.get("/c/nothing-here/badge.svg").status_code == 404
    assert client.get("/c/nothing-here/embed").status_code == 404

"""What search engines, link previews and lost supporters find: robots.txt, a sitemap
of public campaigns, link-preview tags on campaign pages, the lost-link entry."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest

from tests.factories import create_draft, live_campaign, pledge, register


def test_robots_keep_private_pages_out_and_point_at_the_sitemap(app):
    robots = app.test_client().get("/robots.txt")
    assert robots.status_code == 200 and robots.mimetype == "text/plain"
    text = robots.get_data(as_text=True)
    for private in ("/pledge/", "/pledges", "/account", "/dashboard", "/moderation"):
        assert f"Disallow: {private}" in text
    assert f"Sitemap: {app.config['PUBLIC_URL']}/sitemap.xml" in text


def test_the_sitemap_lists_public_campaigns_only(app):
    slug = live_campaign(app)
    owner = app.test_client()
    register(owner, email="drafter@example.org", name="Drafter")
    draft = create_draft(owner, title="A secret draft").headers["Location"].rsplit("/", 1)[-1]
    response = app.test_client().get("/sitemap.xml", headers={"Host": "evil.example"})
    assert response.status_code in (200, 400)  # a forged Host is refused or ignored
    response = app.test_client().get("/sitemap.xml")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    urls = [
        loc.text
        for loc in ElementTree.fromstring(response.data).iter(
            "{http://www.sitemaps.org/schemas/sitemap/0.9}loc"
        )
    ]
    assert f"{app.config['PUBLIC_URL']}/c/{slug}" in urls
    assert not any(draft in url for url in urls)
    assert all(url.startswith(app.config["PUBLIC_URL"]) for url in urls)


def test_a_campaign_page_describes_itself_for_link_previews_without_third_parties(app):
    slug = live_campaign(app)
    page = app.test_client().get(f"/c/{slug}").get_data(as_text=True)
    meta = dict(re.findall(r'<meta (?:name|property)="([^"]+)" content="([^"]*)"', page))
    assert meta["description"] == "Sixty bakers on strike for a union contract."
    assert meta["og:title"] == "Strike fund for the bakery workers"
    assert meta["og:url"] == f"{app.config['PUBLIC_URL']}/c/{slug}"
    assert meta["twitter:card"] == "summary"
    assert 'rel="icon"' in page
    # Nothing the browser would fetch from elsewhere (links to sources are fine).
    assert not re.search(r'src="https?://(?!127\.0\.0\.1)', page)
    assert not re.search(r'<link [^>]*href="https?://(?!127\.0\.0\.1)', page)


def test_a_lost_manage_link_can_be_found_from_every_page_and_the_pledge_form(app):
    slug = live_campaign(app)
    client = app.test_client()
    for path in ("/", f"/c/{slug}", f"/c/{slug}/pledge"):
        assert 'href="/pledges/links"' in client.get(path).get_data(as_text=True), path
    manage = client.get(pledge(client, slug).headers["Location"]).get_data(as_text=True)
    assert 'href="/pledges/links"' in manage


@pytest.mark.parametrize("language", ["en", "es", "de", "pt-BR"])
def test_how_it_works_terms_and_privacy_are_one_click_from_every_page(app, language):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    home = client.get("/").get_data(as_text=True)
    for path in ("/how-it-works", "/terms", "/privacy"):
        assert f'href="{path}"' in home, path
        page = client.get(path)
        assert page.status_code == 200, path
    privacy = client.get("/privacy").get_data(as_text=True)
    # Every kind of data the site keeps is named, with who sees it and for how long.
    assert privacy.count('data-label="') >= 18
    faq = client.get("/how-it-works").get_data(as_text=True)
    for anchor in ("all-or-nothing", "minimum-backers", "when-charged", "fees", "ledger"):
        assert f'id="{anchor}"' in faq

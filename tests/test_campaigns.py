from __future__ import annotations

import io
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from PIL import Image
from sqlalchemy import event, select

from campaigns.models import Campaign, CampaignUpdate, Organizer
from core import clock
from core.extensions import db
from tests.factories import (
    browser_form,
    campaign_form,
    create_draft,
    csrf_token,
    deadline_in,
    join_committee,
    launch,
    launched,
    link_in,
    login,
    logout,
    mail_to,
    register,
    submit,
)


def _campaign(app, slug) -> Campaign | None:
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
        if campaign is not None:
            # Touch what tests read after the session is gone.
            _ = campaign.budget_lines, campaign.sources, campaign.organizers
        return campaign


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(db.func.count(model.id)))


@pytest.fixture
def organizer(client):
    register(client, email="org@example.org", name="Bakers' Committee")
    return client


@pytest.fixture
def live_slug(app, organizer):
    response = create_draft(organizer)
    assert response.status_code == 302, response.get_data(as_text=True)
    slug = launched(organizer, response.headers["Location"].rsplit("/", 1)[-1])
    assert _campaign(app, slug).status == "live"
    return slug


def test_organizer_journey(app, client):
    """Register, draft with budget and sources, launch, post an update, add a co-organizer;
    a visitor then finds it by search and filter."""
    friend = app.test_client()
    register(friend, email="friend@example.org", name="Friend")
    register(client, email="org@example.org", name="Bakers' Committee")

    response = create_draft(client)
    assert response.status_code == 302
    slug = response.headers["Location"].rsplit("/", 1)[-1]
    # A draft lives at a private address; the one asked for is taken at launch.
    assert slug.startswith("draft-") and len(slug) == len("draft-") + 16
    campaign = _campaign(app, slug)
    assert campaign.requested_slug == "strike-fund-for-the-bakery-workers"
    assert campaign.status == "draft"
    assert campaign.goal_amount == 500_050 and campaign.currency == "EUR"
    assert [(b.label, b.amount, b.required) for b in campaign.budget_lines] == [
        ("Strike pay", 400_000, True),
        ("Legal observer", 100_050, False),
    ]
    assert [(s.title, s.url) for s in campaign.sources] == [
        ("Strike ballot result", "https://example.org/ballot")
    ]

    visitor = app.test_client()
    assert visitor.get(f"/c/{slug}").status_code == 404, "drafts are private"
    assert f'href="/c/{slug}"' not in visitor.get("/campaigns?q=bakery&status=all").get_data(
        as_text=True
    )

    slug = launched(client, slug)
    assert slug == "strike-fund-for-the-bakery-workers"  # the address asked for, at launch
    assert _campaign(app, slug).status == "live"

    response = submit(
        client, f"/c/{slug}/updates/new", {"title": "Day one", "body": "The picket is *strong*."}
    )
    assert response.status_code == 302
    response = join_committee(client, friend, slug, "friend@example.org", "treasurer")
    assert response.status_code == 302
    assert sorted(o.role for o in _campaign(app, slug).organizers) == ["owner", "treasurer"]

    listing = visitor.get("/campaigns?q=BAKERY&kind=strike_fund&status=live").get_data(as_text=True)
    assert f'href="/c/{slug}"' in listing
    assert f'href="/c/{slug}"' not in visitor.get("/campaigns?q=bakery&kind=mutual_aid").get_data(
        as_text=True
    )
    page = visitor.get(f"/c/{slug}").get_data(as_text=True)
    assert "Day one" in page and "<em>strong</em>" in page
    assert "Friend" in page and "Bakers&#39; Committee" in page
    assert "friend@example.org" not in page and "org@example.org" not in page
    feed = visitor.get(f"/c/{slug}/updates.atom")
    assert feed.mimetype == "application/atom+xml"
    assert "Day one" in feed.get_data(as_text=True)


def test_co_organizer_can_edit_but_not_manage_team(app, client, live_slug):
    friend = app.test_client()
    register(friend, email="friend@example.org", name="Friend")
    join_committee(client, friend, live_slug, "friend@example.org", "organizer")
    assert friend.get(f"/c/{live_slug}/edit").status_code == 200
    response = submit(
        friend, f"/c/{live_slug}/team", {"email": "x@example.org", "role": "organizer"}
    )
    assert response.status_code == 403


def test_invitations_answer_the_same_for_every_address_and_need_consent(app, client, live_slug):
    friend = app.test_client()
    register(friend, email="friend@example.org", name="Friend")
    answers = []
    for address in ("ghost@example.org", "friend@example.org"):
        response = submit(client, f"/c/{live_slug}/team", {"email": address, "role": "organizer"})
        assert response.status_code == 302
        answers.append(client.get(response.headers["Location"]).get_data(as_text=True))
    assert all("We have emailed an invitation" in page for page in answers)
    assert "No Counterfund account" not in "".join(answers)
    # Nobody is on the committee before accepting.
    assert len(_campaign(app, live_slug).organizers) == 1
    [mail] = [m for m in mail_to(app, "friend@example.org") if "/invitations/" in m]
    link = link_in(mail, "/invitations/")
    # A forwarded link is useless to anyone else.
    stranger = app.test_client()
    register(stranger, email="stranger@example.org", name="Stranger")
    submit(stranger, link, {})
    assert len(_campaign(app, live_slug).organizers) == 1
    assert app.test_client().get(link).status_code == 302  # to login first
    assert submit(friend, link, {}).status_code == 302
    assert sorted(o.role for o in _campaign(app, live_slug).organizers) == ["organizer", "owner"]
    assert friend.get(link).status_code == 404  # used
    # Members can leave; the owner cannot.
    assert submit(friend, f"/c/{live_slug}/team/leave", {}, form_page=f"/c/{live_slug}/team")
    assert len(_campaign(app, live_slug).organizers) == 1
    submit(client, f"/c/{live_slug}/team/leave", {}, form_page=f"/c/{live_slug}/team")
    assert len(_campaign(app, live_slug).organizers) == 1


def test_strangers_get_403_on_live_and_404_on_drafts(app, organizer, live_slug):
    draft = create_draft(organizer, title="A private draft")
    draft_slug = draft.headers["Location"].rsplit("/", 1)[-1]
    stranger = app.test_client()
    register(stranger, email="stranger@example.org", name="Stranger")
    assert stranger.get(f"/c/{live_slug}/edit").status_code == 403
    assert stranger.get(f"/c/{draft_slug}/edit").status_code == 404
    assert stranger.get(f"/c/{draft_slug}").status_code == 404
    assert submit(stranger, f"/c/{live_slug}/cancel", {}, form_page="/campaigns").status_code == 403
    assert _campaign(app, live_slug).status == "live"
    assert app.test_client().get("/c/no-such-campaign").status_code == 404


def test_live_campaign_keeps_money_terms(app, organizer, live_slug):
    before = _campaign(app, live_slug)
    response = submit(
        organizer,
        f"/c/{live_slug}/edit",
        campaign_form(
            title="New title",
            story="A new story",
            goal="99999",
            currency="USD",
            funding_model="flexible",
            deadline=deadline_in(60),
            **{"budget_lines-0-amount": "1"},
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    after = _campaign(app, live_slug)
    assert after.title == "New title" and after.story == "A new story"
    assert (after.goal_amount, after.currency, after.funding_model, after.deadline) == (
        before.goal_amount,
        before.currency,
        before.funding_model,
        before.deadline,
    )
    assert [b.amount for b in after.budget_lines] == [b.amount for b in before.budget_lines]


def _errors(response) -> str:
    return " ".join(re.findall(r'class="error"[^>]*>([^<]*)<', response.get_data(as_text=True)))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"title": ""}, "This field is required"),
        ({"title": "t" * 121}, "120"),
        ({"summary": "s" * 201}, "200"),
        ({"goal": "0"}, "more than zero"),
        ({"goal": "-5"}, "more than zero"),
        ({"goal": "abc"}, "not a number"),
        ({"goal": "10.001"}, "at most 2 decimal places"),
        ({"goal": "NaN"}, "not a number"),
        ({"goal": "10000001"}, "at most"),
        ({"currency": "EURO"}, "Not a valid choice"),
        ({"currency": "ZZZ"}, "Not a valid choice"),
        ({"deadline": "not a date"}, "Not a valid datetime"),
        ({"deadline": "2001-01-01T00:00"}, "between 1 day and 90 days"),
        ({"deadline": "now+91"}, "between 1 day and 90 days"),
        ({"deadline": "now+0.5"}, "between 1 day and 90 days"),
        ({"kind": "pyramid_scheme"}, "Not a valid choice"),
        ({"min_backers": "0"}, "Number must be"),
        ({"min_backers": "1.5"}, "Not a valid integer"),
        ({"slug": "Bad Slug!"}, "lower-case letters"),
        ({"sources-0-url": "javascript:alert(1)"}, "http:// or https://"),
        ({"sources-0-url": "ftp://example.org/file"}, "http:// or https://"),
        ({"sources-0-title": "t" * 201}, "longer than 200"),
        ({"budget_lines-0-item": "i" * 161}, "longer than 160"),
        ({"budget_lines-0-amount": "x"}, "not a number"),
        ({"budget_lines-0-item": ""}, "Say what this amount pays for"),
        ({"goal": "6000"}, "say why"),
    ],
)
def test_bad_campaign_input_saves_nothing(app, organizer, overrides, expected):
    for key, value in list(overrides.items()):
        if key == "deadline" and value.startswith("now+"):
            overrides[key] = deadline_in(float(value[4:]))
    response = create_draft(organizer, **overrides)
    assert response.status_code == 422
    assert expected in _errors(response), _errors(response)
    assert _count(app, Campaign) == 0


@pytest.mark.parametrize(
    ("field", "language", "message"),
    [
        ("budget_lines-0-item", "de", "Feld kann nicht länger als 160 Zeichen sein."),
        ("sources-0-title", "de", "Feld kann nicht länger als 200 Zeichen sein."),
        ("sources-0-title", "es", "El campo no puede tener más de 200 caracteres."),
    ],
)
def test_a_budget_or_source_rows_own_errors_speak_the_visitors_language(
    app, organizer, field, language, message
):
    """Budget lines and sources are forms inside the campaign form: WTForms gives them
    no translations of their own, so their built-in messages stayed in English."""
    organizer.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    too_long = "x" * (161 if field.startswith("budget") else 201)
    response = create_draft(organizer, **{field: too_long})
    assert response.status_code == 422
    assert message in _errors(response), _errors(response)
    assert _count(app, Campaign) == 0


def test_budget_that_does_not_add_up_is_fine_when_explained(app, organizer):
    response = create_draft(organizer, goal="6000", budget_note="A reserve for appeals.")
    assert response.status_code == 302
    assert _count(app, Campaign) == 1


def test_duplicate_slug_suggests_another(app, organizer, live_slug):
    response = create_draft(organizer, slug=live_slug)
    assert response.status_code == 422
    assert f"{live_slug}-2" in _errors(response)
    assert _count(app, Campaign) == 1
    # Leaving it empty derives a free one.
    response = create_draft(organizer, slug="")
    draft_slug = response.headers["Location"].rsplit("/", 1)[-1]
    assert _campaign(app, draft_slug).requested_slug == f"{live_slug}-2"


def test_picking_an_address_never_reveals_someone_elses_draft(app, organizer):
    secret = create_draft(organizer, slug="secret-strike")
    assert secret.status_code == 302
    secret_slug = secret.headers["Location"].rsplit("/", 1)[-1]
    assert secret_slug != "secret-strike"  # a private address while a draft
    prober = app.test_client()
    register(prober, email="prober@example.org", name="Prober")
    probe = create_draft(prober, slug="secret-strike", title="Probe")
    assert probe.status_code == 302  # no "taken": nothing public has that address
    assert "taken" not in prober.get(probe.headers["Location"]).get_data(as_text=True)
    assert app.test_client().get("/c/secret-strike").status_code == 404
    assert launched(organizer, secret_slug) == "secret-strike"
    # Now it is public: the second draft is told so at its launch, and stays a draft.
    probe_slug = probe.headers["Location"].rsplit("/", 1)[-1]
    page = prober.post(
        f"/c/{probe_slug}/launch",
        data={"csrf_token": csrf_token(prober, f"/c/{probe_slug}")},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "was taken by a campaign launched meanwhile" in page
    assert _campaign(app, probe_slug).status == "draft"


def test_launch_rechecks_the_deadline(app, organizer):
    response = create_draft(organizer, deadline=deadline_in(2))
    slug = response.headers["Location"].rsplit("/", 1)[-1]
    clock.freeze(clock.utcnow() + timedelta(days=1, hours=12))
    launch(organizer, slug)
    assert _campaign(app, slug).status == "draft"
    page = organizer.get(f"/c/{slug}").get_data(as_text=True)
    assert "between 1 day and 90 days" in page


def test_launch_needs_a_budget(app, organizer):
    response = create_draft(
        organizer,
        **{
            "budget_lines-0-item": "",
            "budget_lines-0-amount": "",
            "budget_lines-1-item": "",
            "budget_lines-1-amount": "",
        },
    )
    slug = response.headers["Location"].rsplit("/", 1)[-1]
    launch(organizer, slug)
    assert _campaign(app, slug).status == "draft"


def test_campaign_ends_at_its_deadline(app, organizer, live_slug):
    clock.freeze(clock.utcnow() + timedelta(days=31))
    visitor = app.test_client()
    assert live_slug not in visitor.get("/campaigns").get_data(as_text=True)
    assert live_slug in visitor.get("/campaigns?status=ended").get_data(as_text=True)
    api = visitor.get(f"/api/v1/campaigns/{live_slug}").get_json()
    assert api["status"] == "ended"
    assert organizer.get(f"/c/{live_slug}/edit").status_code == 302


def test_cancel(app, organizer, live_slug):
    response = submit(organizer, f"/c/{live_slug}/cancel", {}, form_page=f"/c/{live_slug}")
    assert response.status_code == 302
    assert _campaign(app, live_slug).status == "cancelled"
    assert live_slug in app.test_client().get("/campaigns?status=cancelled").get_data(as_text=True)


XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    "<svg onload=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    "![x](https://tracker.example/pixel.gif)",
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<details open ontoggle=alert(1)>",
    "`<script>alert(1)</script>`",
    "<<script>script>alert(1)<</script>/script>",
    "[a](vbscript:msgbox(1))",
    "<form action=javascript:alert(1)><button>x</button></form>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
]


class _ActiveContent(HTMLParser):
    """Collects every element and attribute that could run code or load a third party."""

    DANGEROUS_TAGS = {
        "script",
        "iframe",
        "img",
        "svg",
        "math",
        "style",
        "object",
        "embed",
        "form",
        "details",
        "link",
        "meta",
        "base",
    }

    def __init__(self):
        super().__init__()
        self.problems = []

    def handle_starttag(self, tag, attrs):
        if tag in self.DANGEROUS_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "src", "srcdoc", "xlink:href"):
                self.problems.append(f"{tag}[{name}]")
            if name == "href" and not (value or "").startswith(
                ("http://", "https://", "mailto:", "/", "#")
            ):
                self.problems.append(f"{tag}[href={value}]")


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_markdown_xss_payloads_render_inert(app, organizer, live_slug, payload):
    submit(organizer, f"/c/{live_slug}/edit", campaign_form(story=payload))
    submit(organizer, f"/c/{live_slug}/updates/new", {"title": "Update", "body": payload})
    html = app.test_client().get(f"/c/{live_slug}").get_data(as_text=True)
    story = html.split('id="story-heading"')[1].split('id="budget-heading"')[0]
    updates = html.split('id="updates-heading"')[1].split("</section>")[0]
    assert "Update" in updates
    for fragment in (story, updates):
        parser = _ActiveContent()
        parser.feed("<h2 " + fragment)
        assert parser.problems == [], fragment


def _png(size=(40, 20), exif=True) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    if exif:
        data = Image.Exif()
        data[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: latitude
        data[0x010F] = "PhoneMaker"
        image.save(out, "JPEG", exif=data.tobytes())
    else:
        image.save(out, "PNG")
    return out.getvalue()


def test_cover_image_is_reencoded_without_metadata(app, organizer, live_slug):
    response = submit(
        organizer,
        f"/c/{live_slug}/edit",
        {**campaign_form(), "cover": (io.BytesIO(_png()), "photo.jpg", "image/jpeg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, _errors(response)
    name = _campaign(app, live_slug).cover_image
    served = app.test_client().get(f"/media/covers/{name}")
    assert served.status_code == 200
    assert served.mimetype == "image/jpeg"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    body = served.data
    served.close()
    stored = Image.open(io.BytesIO(body))
    assert not stored.getexif(), "EXIF (GPS, camera) must be stripped"
    assert b"PhoneMaker" not in body


@pytest.mark.parametrize(
    ("payload", "filename", "expected"),
    [
        (b"GIF89a" + b"\x00" * 100, "a.gif", "not an image we can read"),
        (b"<svg onload=alert(1)></svg>", "a.svg", "not an image we can read"),
        (b"%PDF-1.4 nonsense", "a.png", "not an image we can read"),
        (b"", "empty.png", "The file is empty"),
    ],
)
def test_bad_cover_images_are_refused(app, organizer, live_slug, payload, filename, expected):
    response = submit(
        organizer,
        f"/c/{live_slug}/edit",
        {**campaign_form(), "cover": (io.BytesIO(payload), filename, "image/png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert expected in _errors(response)
    assert _campaign(app, live_slug).cover_image is None


def test_oversized_cover_image_is_refused(make_app):
    app = make_app(COVER_IMAGE_MAX_BYTES=1000)
    client = app.test_client()
    register(client)
    slug = create_draft(client).headers["Location"].rsplit("/", 1)[-1]
    big = _png(size=(400, 400), exif=False)
    assert len(big) > 1000
    response = submit(
        client,
        f"/c/{slug}/edit",
        {**campaign_form(), "cover": (io.BytesIO(big), "big.png", "image/png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "larger than" in _errors(response)
    assert _campaign(app, slug).cover_image is None


def _count_queries(app, url) -> int:
    statements = []
    with app.app_context():
        engine = db.engine

    def count(*_args, **_kwargs):
        statements.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        response = app.test_client().get(url)
        assert response.status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def test_detail_page_query_count_does_not_grow(app, organizer, live_slug):
    baseline = _count_queries(app, f"/c/{live_slug}")
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == live_slug))
        owner_id = campaign.organizers[0].user_id
        from accounts.models import User

        for n in range(15):
            user = User(email=f"m{n}@example.org", display_name=f"Member {n}", password_hash="x")
            db.session.add(user)
            db.session.flush()
            db.session.add(Organizer(campaign_id=campaign.id, user_id=user.id, role="organizer"))
            db.session.add(
                CampaignUpdate(
                    campaign_id=campaign.id,
                    author_id=user.id if n % 2 else owner_id,
                    title=f"Update {n}",
                    body="news",
                )
            )
        db.session.commit()
    grown = _count_queries(app, f"/c/{live_slug}")
    page = app.test_client().get(f"/c/{live_slug}").get_data(as_text=True)
    assert "Member 14" in page and "Update 14" in page
    assert grown == baseline, f"{baseline} queries grew to {grown}"


def test_listing_sorts_and_paginates(make_app):
    app = make_app(PAGE_SIZE=2)
    client = app.test_client()
    register(client)
    slugs = []
    for n, days in enumerate([20, 10, 30]):
        response = create_draft(client, title=f"Campaign {n}", deadline=deadline_in(days))
        slugs.append(launched(client, response.headers["Location"].rsplit("/", 1)[-1]))
    with app.app_context():
        for slug, (pledged, backers) in zip(
            slugs, [(100_000, 5), (400_000, 1), (0, 0)], strict=True
        ):
            campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
            campaign.pledged_amount, campaign.backer_count = pledged, backers
        db.session.commit()
    visitor = app.test_client()

    def order(sort):
        html = "".join(
            visitor.get(f"/campaigns?sort={sort}&page={p}").get_data(as_text=True) for p in (1, 2)
        )
        return [int(n) for n in re.findall(r'href="/c/campaign-(\d)"', html)] or [
            int(m) for m in re.findall(r"Campaign (\d)</a>", html)
        ]

    assert order("ending") == [1, 0, 2]
    assert order("backers") == [0, 1, 2]
    assert order("funded") == [1, 0, 2]
    assert order("newest") == [2, 1, 0]
    first = visitor.get("/campaigns").get_data(as_text=True)
    assert "Page 1 of 2" in first and 'rel="next"' in first


def test_empty_listing_says_what_to_do(app, client):
    html = client.get("/campaigns?q=nothing-matches").get_data(as_text=True)
    assert "No campaign matches these filters" in html
    assert "Start a campaign" in html


def test_report_and_moderation(app, organizer, live_slug):
    visitor = app.test_client()
    response = submit(visitor, f"/c/{live_slug}/report", {"reason": "short"})
    assert response.status_code == 422
    response = submit(
        visitor,
        f"/c/{live_slug}/report",
        {"reason": "This campaign is a scam impersonating a union."},
    )
    assert response.status_code == 302
    moderator = app.test_client()
    register(moderator, email="mod@example.org", name="Mod")
    assert moderator.get("/moderation/").status_code == 403
    app.test_cli_runner().invoke(args=["users", "set-moderator", "mod@example.org"])
    page = moderator.get("/moderation/").get_data(as_text=True)
    assert "impersonating a union" in page
    response = submit(
        moderator,
        f"/moderation/c/{live_slug}/suspend",
        {"reason": "Checking"},
        form_page="/moderation/",
    )
    assert response.status_code == 302
    assert _campaign(app, live_slug).status == "suspended"
    assert visitor.get(f"/c/{live_slug}").status_code == 451
    assert live_slug not in visitor.get("/campaigns?status=all").get_data(as_text=True)
    assert visitor.get(f"/api/v1/campaigns/{live_slug}").status_code == 404
    assert "impersonating" not in moderator.get("/moderation/").get_data(as_text=True)
    submit(moderator, f"/moderation/c/{live_slug}/restore", {}, form_page="/moderation/")
    assert _campaign(app, live_slug).status == "live"
    assert visitor.get(f"/c/{live_slug}").status_code == 200


def test_only_moderators_can_suspend(app, organizer, live_slug):
    response = submit(
        organizer, f"/moderation/c/{live_slug}/suspend", {"reason": "x"}, form_page="/campaigns"
    )
    assert response.status_code == 403
    assert _campaign(app, live_slug).status == "live"


def test_logged_out_users_are_sent_to_login(app, client):
    response = client.get("/campaigns/new")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    register(client)
    logout(client)
    login(client)
    assert client.get("/campaigns/new").status_code == 200


def test_a_live_campaign_saves_what_its_edit_page_sends(app, organizer, live_slug):
    """The organizer opens Edit on a live campaign and saves: the browser sends only
    the fields the page shows (the goal, deadline and budget are frozen and not on
    it). Changing the summary works; changing nothing works too."""
    page = organizer.get(f"/c/{live_slug}/edit").get_data(as_text=True)
    sent = browser_form(page, containing="title")
    assert sent["title"] == ["Strike fund for the bakery workers"]
    assert "deadline" not in sent and "goal" not in sent  # frozen: not on the page
    unchanged = organizer.post(f"/c/{live_slug}/edit", data=sent)
    assert unchanged.status_code == 302, unchanged.get_data(as_text=True)[:3000]
    sent["summary"] = ["Sixty bakers, one contract, no raise in six years."]
    changed_summary = organizer.post(f"/c/{live_slug}/edit", data=sent)
    assert changed_summary.status_code == 302
    campaign = _campaign(app, live_slug)
    assert campaign.summary == "Sixty bakers, one contract, no raise in six years."
    assert campaign.status == "live" and campaign.goal_amount == 500050


def test_search_finds_words_in_any_order_stemmed_and_ranked(app, organizer):
    """Search matched exact phrases only: "winter fund" missed "Northside winter
    heating fund" and "Riverside strike" found nothing. Words in any order, stemmed,
    over title, summary, story and updates; a title match ranks above a story match."""
    heating = launched(
        organizer,
        create_draft(
            organizer,
            title="Northside winter heating fund",
            summary="Keeping flats warm through the cold months.",
        )
        .headers["Location"]
        .rsplit("/", 1)[-1],
    )
    strike = launched(
        organizer,
        create_draft(
            organizer,
            title="Riverside warehouse pickers",
            summary="Strike pay for the night shift.",
            story="The pickers of the Riverside warehouse walked out in the **winter**.",
        )
        .headers["Location"]
        .rsplit("/", 1)[-1],
    )
    visitor = app.test_client()

    def found(query: str) -> list[str]:
        page = visitor.get("/campaigns", query_string={"q": query, "status": "all"})
        return re.findall(r'<h3><a href="/c/([^"]+)"', page.get_data(as_text=True))

    assert found("winter fund") == [heating]
    assert found("Riverside strike") == [strike]
    assert found("striking pickers") == [strike]  # stemmed: striking ~ strike
    assert found("winter") == [heating, strike]  # the title match ranks first
    assert found("heating Riverside") == []
    submit(
        organizer,
        f"/c/{strike}/updates/new",
        {"title": "Day nine", "body": "Bakers from across town joined the picket."},
    )
    assert found("bakers picket") == [strike]  # updates are searched too
    assert found('"; DROP TABLE campaigns; -- OR *') == []  # words only: no syntax
    assert found("!!! ***") == []  # no words: nothing, not everything
    assert set(found("")) == {heating, strike}


def test_search_queries_every_language_the_index_is_built_in():
    """The migration (which imports no application code) and campaigns.search each name
    PostgreSQL's text-search configurations: a language indexed but not queried would
    never be found."""
    import importlib.util
    from pathlib import Path

    from campaigns import search

    versions = Path(__file__).resolve().parent.parent / "migrations" / "versions"
    path = next(versions.glob("*_campaign_full_text_search.py"))
    spec = importlib.util.spec_from_file_location("fts_migration", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert set(search.PG_CONFIGS) == set(migration.PG_CONFIGS.values()) | {"simple"}

"""What other sites embed: a campaign's SVG progress badge and a small widget page.

The widget is the one page any site may frame (its CSP says `frame-ancestors *`;
every other page keeps `none`). Both are rendered in the language of their `lang`
parameter, set no cookie, load nothing from elsewhere and link to the campaign."""

from __future__ import annotations

from flask import Blueprint, abort, make_response, render_template, request
from flask_babel import force_locale

from campaigns import services
from campaigns.models import Campaign, CampaignStatus
from core.i18n import INTERFACE_LOCALES
from core.security import content_security_policy
from core.urls import public_url_for

bp = Blueprint("embeds", __name__)

TITLE_CHARACTERS = 44  # what fits the badge's width at its font size


def _campaign(slug: str) -> Campaign:
    campaign = services.campaign_for_page(slug)
    if campaign is None or campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SUSPENDED):
        abort(404)
    return campaign


def _language() -> str:
    asked = (request.args.get("lang") or "en").replace("-", "_")
    return asked if asked in INTERFACE_LOCALES else "en"


def _shared_headers(response, max_age: int = 300):
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.vary.add("Accept-Language")
    return response


@bp.get("/c/<slug>/badge.svg")
def badge(slug: str):
    campaign = _campaign(slug)
    title = campaign.title
    if len(title) > TITLE_CHARACTERS:
        title = title[: TITLE_CHARACTERS - 1].rstrip() + "…"
    with force_locale(_language()):
        body = render_template(
            "campaigns/badge.svg",
            campaign=campaign,
            title=title,
            width=max(4, min(100, campaign.percent_funded)) * 3.2,
        )
    response = make_response(body)
    response.mimetype = "image/svg+xml"
    # An image: it runs nothing and fetches nothing, even opened on its own.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return _shared_headers(response)


@bp.get("/c/<slug>/embed")
def widget(slug: str):
    campaign = _campaign(slug)
    with force_locale(_language()):
        body = render_template(
            "campaigns/embed.html",
            campaign=campaign,
            link=public_url_for("campaigns.detail", slug=campaign.slug),
            language=_language().replace("_", "-"),
        )
    response = make_response(body)
    response.headers["Content-Security-Policy"] = content_security_policy(frame_ancestors="*")
    return _shared_headers(response, max_age=60)

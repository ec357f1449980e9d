"""Read-only JSON API over public campaigns."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from campaigns import services
from campaigns.models import Campaign, CampaignStatus
from core.extensions import db
from core.urls import public_url_for, query_int

bp = Blueprint("campaigns_api", __name__, url_prefix="/api/v1")

MAX_PER_PAGE = 100


def campaign_json(campaign: Campaign) -> dict:
    return {
        "slug": campaign.slug,
        "title": campaign.title,
        "summary": campaign.summary,
        "kind": campaign.kind,
        "status": campaign.public_status.value,
        "language": campaign.language,
        "funding_model": campaign.funding_model,
        "goal": campaign.goal.as_json(),
        "pledged": campaign.pledged.as_json(),
        "backers": campaign.backer_count,
        "min_backers": campaign.min_backers,
        "deadline": campaign.deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "url": public_url_for("campaigns.detail", slug=campaign.slug),
    }


def _positive_int(name: str, default: int, maximum: int) -> int:
    return query_int(name, default=default, minimum=1, maximum=maximum)


@bp.get("/campaigns")
def list_campaigns():
    page_number = _positive_int("page", 1, 1_000_000)
    per_page = _positive_int("per_page", current_app.config["PAGE_SIZE"], MAX_PER_PAGE)
    status = request.args.get("status", "all")
    if status not in services.PUBLIC_STATUSES:
        abort(400, description=f"status must be one of {', '.join(services.PUBLIC_STATUSES)}")
    sort = request.args.get("sort", "newest")
    if sort not in services.SORTS:
        abort(400, description=f"sort must be one of {', '.join(services.SORTS)}")
    page = db.paginate(
        services.search_campaigns(
            kind=request.args.get("kind") or None,
            status=status,
            text=(request.args.get("q") or "")[:200],
            sort=sort,
        ),
        page=page_number,
        per_page=per_page,
        error_out=False,
        count=True,
    )

    def link(number: int | None) -> str | None:
        if number is None:
            return None
        args = {**request.args.to_dict(), "page": number, "per_page": per_page}
        return public_url_for("campaigns_api.list_campaigns", **args)

    return jsonify(
        campaigns=[campaign_json(c) for c in page.items],
        page=page.page,
        per_page=page.per_page,
        total=page.total,
        next=link(page.next_num),
        previous=link(page.prev_num),
    )


@bp.get("/campaigns/<slug>")
def get_campaign(slug: str):
    campaign = db.session.scalar(services.public_campaigns().where(Campaign.slug == slug))
    if campaign is None or campaign.status == CampaignStatus.SUSPENDED:
        abort(404, description="no public campaign has that slug")
    return jsonify(campaign_json(campaign))

"""Read-only JSON API over public campaigns."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import select

from campaigns import periods, services
from campaigns.models import Campaign, CampaignStatus
from core.clock import utcnow
from core.extensions import db
from core.money import Money
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


def _public_campaign(slug: str) -> Campaign:
    campaign = db.session.scalar(services.public_campaigns().where(Campaign.slug == slug))
    if campaign is None or campaign.status == CampaignStatus.SUSPENDED:
        abort(404, description="no public campaign has that slug")
    return campaign


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.get("/campaigns/<slug>")
def get_campaign(slug: str):
    campaign = _public_campaign(slug)
    return jsonify(campaign_json(campaign) | {"recurring": recurring_json(campaign)})


def recurring_json(campaign: Campaign) -> dict | None:
    """None for a one-off campaign; its recurrence, and the period running now."""
    recurrence = db.session.get(periods.Recurrence, campaign.id)
    if recurrence is None or campaign.launched_at is None:
        return None
    current, ends_at = recurrence.current(campaign.launched_at, utcnow())
    threshold = recurrence.threshold_money(campaign.currency)
    return {
        "interval": recurrence.interval,
        "current_period": current,
        "period_ends_at": _iso(ends_at),
        "threshold": {
            "amount": threshold.as_json() if threshold else None,
            "backers": recurrence.threshold_backers,
        },
        "ends_at": _iso(recurrence.ends_at) if recurrence.ends_at else None,
    }


# Internal period states as the API names them: a period being charged has been met.
PERIOD_STATUS = {
    "open": "open",
    "met": "met",
    "charging": "met",
    "missed": "missed",
    "charged": "charged",
}


@bp.get("/campaigns/<slug>/periods")
def list_periods(slug: str):
    """Every period so far, oldest first: the open one with the pledges as they stand,
    decided ones with the figures frozen at their end; `collected` is what the ledger
    holds for the period's charges."""
    campaign = _public_campaign(slug)
    if db.session.get(periods.Recurrence, campaign.id) is None:
        abort(404, description="this campaign is not recurring")
    rows = db.session.scalars(
        select(periods.Period)
        .where(periods.Period.campaign_id == campaign.id)
        .order_by(periods.Period.number)
    ).all()

    def money(amount: int) -> dict:
        return Money(amount, campaign.currency).as_json()

    return jsonify(
        periods=[
            {
                "period": p.number,
                "starts_at": _iso(p.starts_at),
                "ends_at": _iso(p.ends_at),
                "status": PERIOD_STATUS[p.status],
                "pledged": money(
                    campaign.pledged_amount if p.status == "open" else p.pledged_amount or 0
                ),
                "backers": campaign.backer_count if p.status == "open" else p.backer_count or 0,
                "collected": money(p.collected_amount),
            }
            for p in rows
        ]
    )

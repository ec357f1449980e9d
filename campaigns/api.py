"""Read-only JSON API over public campaigns."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import and_, or_, select

from campaigns import periods, services
from campaigns.models import Campaign, CampaignKind, CampaignStatus, CampaignUpdate
from core.api import decode_cursor, encode_cursor, limit_api, newest_first, next_link, per_page
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from core.page_cache import cached_page
from core.text import single_line
from core.urls import public_url_for, query_int

bp = Blueprint("campaigns_api", __name__, url_prefix="/api/v1")
limit_api(bp)

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


# Orders whose keys never change once a campaign is public: a cursor walks them without
# skipping or repeating a campaign, whatever is launched meanwhile. (Backers and
# percent funded change under the walker's feet: those sorts page by number only.)
CURSOR_KEYS = {"ending": (Campaign.deadline, "asc"), "newest": (services.NEWEST_KEY, "desc")}


def _after_cursor(query, sort: str):
    cursor = decode_cursor()
    if cursor is None:
        return query, False
    if sort not in CURSOR_KEYS or request.args.get("q"):
        abort(400, description="cursor pagination needs sort=ending or sort=newest, without q")
    try:
        moment, last_id = datetime.fromisoformat(str(cursor[0])), int(cursor[1])
    except (ValueError, IndexError):
        abort(400, description="cursor is not a cursor this API gave")
    if moment.tzinfo is None:
        abort(400, description="cursor is not a cursor this API gave")
    key, direction = CURSOR_KEYS[sort]
    beyond = key > moment if direction == "asc" else key < moment
    return query.where(or_(beyond, and_(key == moment, Campaign.id < last_id))), True


def _cursor_of(campaign: Campaign, sort: str) -> str:
    moment = campaign.deadline if sort == "ending" else campaign.launched_at or campaign.created_at
    return encode_cursor(moment.isoformat(), campaign.id)


@bp.get("/campaigns")
@cached_page
def list_campaigns():
    page_number = _positive_int("page", 1, 1_000_000)
    per_page = _positive_int("per_page", current_app.config["PAGE_SIZE"], MAX_PER_PAGE)
    status = request.args.get("status", "all")
    if status not in services.PUBLIC_STATUSES:
        abort(400, description=f"status must be one of {', '.join(services.PUBLIC_STATUSES)}")
    sort = request.args.get("sort", "newest")
    if sort not in services.SORTS:
        abort(400, description=f"sort must be one of {', '.join(services.SORTS)}")
    kind = request.args.get("kind") or None
    if kind is not None and kind not in set(CampaignKind):
        abort(400, description=f"kind must be one of {', '.join(CampaignKind)}")
    query, by_cursor = _after_cursor(
        services.search_campaigns(
            kind=kind,
            status=status,
            text=(single_line(request.args.get("q")) or "")[:200],
            sort=sort,
        ),
        sort,
    )
    if by_cursor:
        items = list(db.session.scalars(query.limit(per_page + 1)))
        more = len(items) > per_page
        next_cursor = _cursor_of(items[per_page - 1], sort) if more else None
        return jsonify(
            campaigns=[campaign_json(c) for c in items[:per_page]],
            per_page=per_page,
            next_cursor=next_cursor,
            next=next_link(next_cursor),
        )
    page = db.paginate(
        query,
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

    cursor = (
        _cursor_of(page.items[-1], sort)
        if page.has_next and page.items and sort in CURSOR_KEYS and not request.args.get("q")
        else None
    )
    return jsonify(
        campaigns=[campaign_json(c) for c in page.items],
        page=page.page,
        per_page=page.per_page,
        total=page.total,
        next=link(page.next_num),
        previous=link(page.prev_num),
        next_cursor=cursor,
    )


def public_campaign(slug: str) -> Campaign:
    campaign = db.session.scalar(services.public_campaigns().where(Campaign.slug == slug))
    if campaign is None or campaign.status == CampaignStatus.SUSPENDED:
        abort(404, description="no public campaign has that slug")
    return campaign


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.get("/campaigns/<slug>")
@cached_page
def get_campaign(slug: str):
    campaign = public_campaign(slug)
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


@bp.get("/campaigns/<slug>/updates")
def list_updates(slug: str):
    """The organizers' updates, newest first, cursor-paginated."""
    campaign = public_campaign(slug)
    items, cursor = newest_first(
        select(CampaignUpdate).where(CampaignUpdate.campaign_id == campaign.id),
        CampaignUpdate.id,
        per_page(),
    )
    return jsonify(
        updates=[
            {
                "id": u.id,
                "title": u.title,
                "body": u.body,
                "published_at": _iso(u.created_at),
                "url": public_url_for("campaigns.detail", slug=campaign.slug) + "#updates",
            }
            for u in items
        ],
        next_cursor=cursor,
        next=next_link(cursor),
    )


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
    campaign = public_campaign(slug)
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

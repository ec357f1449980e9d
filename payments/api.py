"""Supporters as they chose to appear, for anyone (no amounts, no addresses)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from campaigns.api import public_campaign
from core.api import limit_api, newest_first, next_link, per_page
from payments.models import Pledge, Visibility
from payments.services import BACKED

bp = Blueprint("payments_api", __name__, url_prefix="/api/v1")
limit_api(bp)


@bp.get("/campaigns/<slug>/supporters")
def list_supporters(slug: str):
    """Backers of the campaign, newest first: the name or pseudonym they chose to show
    (null when anonymous), their public message, and the day they pledged."""
    campaign = public_campaign(slug)
    items, cursor = newest_first(
        select(Pledge).where(
            Pledge.campaign_id == campaign.id,
            Pledge.status.in_(BACKED),
            Pledge.parent_id.is_(None),
        ),
        Pledge.id,
        per_page(),
    )
    return jsonify(
        supporters=[
            {
                "name": None
                if p.visibility == Visibility.ANONYMOUS or not p.public_name
                else p.public_name,
                "message": p.public_message or None,
                "since": (p.activated_at or p.created_at).strftime("%Y-%m-%d"),
            }
            for p in items
        ],
        next_cursor=cursor,
        next=next_link(cursor),
    )

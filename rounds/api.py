"""A round's inputs and results, for anyone to recompute (verifier: `round`)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from core.api import limit_api
from core.extensions import db
from core.page_cache import cached_page
from core.urls import public_url_for
from rounds import services
from rounds.models import Round, RoundStatus, Rule

bp = Blueprint("rounds_api", __name__, url_prefix="/api/v1")
limit_api(bp)


def _time(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parameters(round_: Round) -> dict:
    """Every cap and ratio of the round's rule, as the verifier's functions take them."""
    if round_.rule == Rule.QUADRATIC:
        return {"max_share_bp": round_.max_share_bp, "min_contribution": round_.min_contribution}
    return {
        "ratio_bp": round_.ratio_bp,
        "per_pledge": round_.cap_per_pledge,
        "per_backer": round_.cap_per_backer,
        "per_campaign": round_.cap_per_campaign,
    }


def round_json(round_: Round, *, with_contributions: bool) -> dict:
    counted = services.contributions(round_) if with_contributions else []
    matches = services.matches(round_, counted if with_contributions else None)
    final = round_.status == RoundStatus.FINAL
    campaigns = []
    for entry in round_.accepted:
        slug = entry.campaign.slug
        item: dict = {"slug": slug, "match": matches.get(slug, 0)}
        if with_contributions:
            item["contributions"] = [
                {"backer": c.backer, "amount": c.amount, "order": c.order}
                for c in counted
                if c.campaign == slug
            ]
        item["ledger_reference"] = (
            services.match_reference(round_, entry.campaign_id)
            if final and matches.get(slug)
            else None
        )
        campaigns.append(item)
    return {
        "id": round_.id,
        "name": round_.name,
        "funder": round_.funder,
        "rule": round_.rule,
        "currency": round_.currency,
        "pool": round_.pool.as_json(),
        "parameters": parameters(round_),
        "status": round_.public_status.value,
        "opens_at": _time(round_.opens_at),
        "closes_at": _time(round_.closes_at),
        "account": services.ledger.round_account(round_.id),
        "url": public_url_for("rounds.detail", round_id=round_.id),
        "api_url": public_url_for("rounds_api.round_detail", round_id=round_.id),
        "campaigns": campaigns,
    }


@bp.get("/rounds")
@cached_page
def rounds():
    return jsonify(
        rounds=[round_json(r, with_contributions=False) for r in services.public_rounds()]
    )


@bp.get("/rounds/<int:round_id>")
@cached_page
def round_detail(round_id: int):
    return jsonify(round_json(db.get_or_404(Round, round_id), with_contributions=True))

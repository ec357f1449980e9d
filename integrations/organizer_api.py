"""The organizers' API, with personal tokens (integrations.tokens): their campaigns,
backers as they chose to appear with their messages (never an address), settlement
status, and their webhooks. Never cached, no CORS: meant for servers, not browsers."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select

from accounts.models import User
from campaigns.models import Campaign, Permission, role_can
from core.api import limit_api
from core.extensions import csrf, db
from core.work import RuleError
from integrations import tokens, webhooks
from integrations.models import Scope
from payments import settlement
from payments.services import backers_of

bp = Blueprint("organizer_api", __name__, url_prefix="/api/v1/organizer")
limit_api(bp)
csrf.exempt(bp)  # a bearer token, never a cookie: nothing a forged form could use


def _time(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _campaign(slug: str, scope: Scope, permission: Permission) -> tuple[Campaign, User]:
    """The campaign and the token's user, who is on its committee with `permission`."""
    user = tokens.from_request(scope)
    campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
    role = campaign.role_of(user) if campaign is not None else None
    if campaign is None or role is None:
        abort(404, description="you are not on the committee of a campaign with that slug")
    if not role_can(role, permission):
        abort(403, description=f"your role ({role}) does not allow this")
    return campaign, user


@bp.get("/campaigns/<slug>/backers")
def backers(slug: str):
    campaign, _user = _campaign(slug, Scope.BACKERS, Permission.SEE_MONEY)
    rows = backers_of(campaign.id)
    db.session.commit()  # the token's last use
    return jsonify(
        backers=[
            {
                "reference": p.public_id,
                "shown_as": p.shown_as,
                "amount": p.money.as_json(),
                "status": p.status,
                "recurring": p.recurring,
                "public_message": p.public_message or None,
                "private_message": p.private_message or None,
                "pledged_at": _time(p.activated_at),
            }
            for p in rows
        ]
    )


@bp.get("/campaigns/<slug>/settlement")
def settlement_status(slug: str):
    campaign, _user = _campaign(slug, Scope.SETTLEMENT, Permission.SEE_MONEY)
    counts = settlement.progress(campaign.id)
    db.session.commit()
    return jsonify(
        status=campaign.status,
        decided_at=_time(campaign.decided_at),
        settled_at=_time(campaign.settled_at),
        collected=campaign.collected.as_json(),
        pledges=counts,
    )


def _endpoint_json(endpoint, with_secret: bool = False) -> dict:
    found = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": sorted(endpoint.event_set),
        "created_at": _time(endpoint.created_at),
    }
    if with_secret:
        found["secret"] = endpoint.secret
    return found


@bp.get("/campaigns/<slug>/webhooks")
def list_webhooks(slug: str):
    campaign, _user = _campaign(slug, Scope.WEBHOOKS, Permission.EDIT)
    found = [_endpoint_json(e) for e in webhooks.endpoints_of(campaign)]
    db.session.commit()
    return jsonify(webhooks=found)


@bp.post("/campaigns/<slug>/webhooks")
def add_webhook(slug: str):
    campaign, user = _campaign(slug, Scope.WEBHOOKS, Permission.EDIT)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        abort(400, description='send JSON: {"url": "https://…", "events": ["pledge.created", …]}')
    events = body.get("events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        abort(400, description="events must be a list of event names")
    try:
        endpoint = webhooks.add_endpoint(campaign, user.id, body["url"], events)
    except RuleError as exc:
        db.session.rollback()
        abort(422, description=str(exc.message))
    db.session.commit()
    return jsonify(_endpoint_json(endpoint, with_secret=True)), 201


@bp.delete("/campaigns/<slug>/webhooks/<int:endpoint_id>")
def remove_webhook(slug: str, endpoint_id: int):
    campaign, _user = _campaign(slug, Scope.WEBHOOKS, Permission.EDIT)
    try:
        webhooks.remove_endpoint(campaign, endpoint_id)
    except RuleError as exc:
        db.session.rollback()
        abort(404, description=str(exc.message))
    db.session.commit()
    return "", 204

"""Stripe webhooks: verified, deduplicated by event id, tolerant of any order.

Handlers never trust the event's copy of an object: they fetch its current state
from Stripe and apply guarded transitions, so a late or repeated event can only
confirm what already happened, never undo it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import stripe
from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core.extensions import csrf, db
from payments import cards, disputes, fees, refunds, services, settlement
from payments.backends import get_backend
from payments.backends.base import BackendError
from payments.models import Pledge, PledgeStatus, ProcessedWebhookEvent

bp = Blueprint("payment_webhooks", __name__, url_prefix="/payments")
log = logging.getLogger(__name__)


@bp.post("/stripe/webhook")
@csrf.exempt
def stripe_webhook():
    if current_app.config["PAYMENT_BACKEND"] != "stripe":
        abort(404)
    try:
        event = stripe.Webhook.construct_event(
            request.get_data(),
            request.headers.get("Stripe-Signature"),
            current_app.config["STRIPE_WEBHOOK_SECRET"],
            tolerance=300,
        )
    except (ValueError, stripe.SignatureVerificationError):
        abort(400, description="invalid payload or signature")
    if bool(getattr(event, "livemode", False)) != get_backend().livemode:
        abort(400, description="livemode does not match this deployment")

    db.session.add(
        ProcessedWebhookEvent(
            provider="stripe", event_id=event.id, event_type=event.type, outcome="received"
        )
    )
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return jsonify(status="duplicate")

    handler = HANDLERS.get(event.type)
    outcome = handler(event.data.object.to_dict()) if handler else "ignored"
    db.session.execute(
        update(ProcessedWebhookEvent)
        .where(ProcessedWebhookEvent.event_id == event.id)
        .values(outcome=outcome)
    )
    db.session.commit()
    log.info("stripe webhook %s (%s): %s", event.id, event.type, outcome)
    return jsonify(status=outcome)


def _our_pledge(obj) -> Pledge | None:
    pledge_ref = (obj.get("metadata") or {}).get("pledge")
    if not pledge_ref:
        return None
    pledge = db.session.scalar(select(Pledge).where(Pledge.public_id == pledge_ref))
    if pledge is None or pledge.backend != "stripe":
        return None
    return pledge


def setup_intent_changed(obj) -> str:
    pledge = _our_pledge(obj)
    if pledge is None:
        return "ignored"
    if obj.get("id") != pledge.provider_setup_id:
        return "stale"  # an older card attempt; the current one decides
    try:
        saved = get_backend().saved_card(obj["id"])
    except BackendError:
        abort(503, description="could not reach Stripe; retry later")
    try:
        return cards.apply_saved_card(pledge, saved)
    except services.PledgeError:
        return "refused"


def payment_intent_changed(obj) -> str:
    """payment_intent.succeeded / payment_failed. Settlement records its own charges
    (and finds lost ones by our pledge id); this records what only Stripe sees: a
    payment that waited for the supporter's bank (3-D Secure), which the return page
    may also record first, and any payment for our pledge that succeeded where no one
    was waiting for it (followed, never lost)."""
    pledge = _our_pledge(obj)
    intent_id = obj.get("id")
    if pledge is None or not isinstance(intent_id, str):
        return "ignored"
    if pledge.provider_charge_id == intent_id:
        return "already recorded"
    if pledge.status == PledgeStatus.CHARGING:
        return "settlement records it"
    try:
        state = get_backend().payment_state(intent_id)
    except BackendError:
        abort(503, description="could not reach Stripe; retry later")
    if intent_id != pledge.provider_action_id and state.status != "succeeded":
        return "stale"  # an earlier attempt's failure changes nothing
    return settlement.record_authenticated(pledge.id, state)


def charge_updated(obj) -> str:
    """Stripe tells of a charge's balance transaction (and with it the fee) by
    updating the charge: a fee still pending is recorded now."""
    intent = obj.get("payment_intent")
    if not isinstance(intent, str) or not intent:
        return "ignored"
    pledge = db.session.scalar(
        select(Pledge).where(Pledge.provider_charge_id == intent, Pledge.backend == "stripe")
    )
    if pledge is None:
        return "ignored"
    try:
        return fees.follow_fee(pledge)
    except BackendError:
        abort(503, description="could not reach Stripe; retry later")


def charge_refunded(obj) -> str:
    """A refund made outside the app (Stripe's dashboard) or one of ours: what Stripe
    holds now is followed onto the ledger (payments.refunds.follow_provider_refunds),
    so a repeated or out-of-order event records nothing twice."""
    intent = obj.get("payment_intent")
    if not isinstance(intent, str) or not intent:
        return "ignored"
    pledge = db.session.scalar(
        select(Pledge)
        .where(Pledge.provider_charge_id == intent, Pledge.backend == "stripe")
        .with_for_update()
    )
    if pledge is None:
        return "ignored"
    try:
        recorded = refunds.follow_provider_refunds(pledge)
    except BackendError:
        abort(503, description="could not reach Stripe; retry later")
    return "refund recorded" if recorded else "nothing new"


def dispute_changed(event_type: str, obj) -> str:
    """charge.dispute.*: what Stripe holds for the dispute now goes onto the ledger."""
    dispute_id = obj.get("id")
    if not isinstance(dispute_id, str) or not dispute_id.startswith("dp_"):
        return "ignored"
    try:
        return disputes.follow(event_type, dispute_id)
    except BackendError:
        abort(503, description="could not reach Stripe; retry later")


HANDLERS: dict[str, Callable[[dict], str]] = {
    "setup_intent.succeeded": setup_intent_changed,
    "setup_intent.setup_failed": setup_intent_changed,
    "setup_intent.requires_action": setup_intent_changed,
    "payment_intent.succeeded": payment_intent_changed,
    "payment_intent.payment_failed": payment_intent_changed,
    "charge.updated": charge_updated,
    "charge.refunded": charge_refunded,
    "charge.refund.updated": charge_refunded,
    **{
        event_type: partial(dispute_changed, event_type)
        for event_type in (
            "charge.dispute.created",
            "charge.dispute.updated",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
            "charge.dispute.closed",
        )
    },
}

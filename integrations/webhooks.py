"""Webhooks: endpoints registered by a campaign's organizers receive its events.

An event is queued as a delivery per subscribed endpoint in the transaction that
causes it (signals sent inside the change's transaction), so a change that rolls back
sends nothing; a job delivers after commit, and the sweep retries. Each delivery is
signed the Standard Webhooks way (the `standardwebhooks` library: HMAC-SHA256 over
"<webhook-id>.<webhook-timestamp>.<body>", headers webhook-id, webhook-timestamp,
webhook-signature "v1,<base64>"), retried with exponential backoff for a day, and
logged. Targets must be HTTPS in production, and never private, loopback,
link-local or otherwise non-public addresses unless WEBHOOK_ALLOW_PRIVATE_TARGETS
(development): checked when an endpoint is registered and again before every
attempt, since DNS answers change."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from standardwebhooks import Webhook

from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import changed, db
from core.jobs import app_job, enqueue_after_commit
from core.work import RuleError
from integrations.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

log = logging.getLogger(__name__)

# Seconds after the first attempt: then every 8 hours until a day has passed.
BACKOFF = (30, 120, 600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600)
GIVE_UP_AFTER = timedelta(days=1)
TIMEOUT = 10  # seconds per attempt
BATCH = 50


class UnsafeTarget(RuleError):
    pass


def check_target(url: str) -> None:
    """Refuse a URL a webhook may not be sent to (UnsafeTarget says why)."""
    parts = urlsplit(url.strip())
    production = current_app.config["PRODUCTION"]
    if parts.scheme != "https" and (production or parts.scheme != "http"):
        raise UnsafeTarget(_l("The address must start with https://."), "url")
    if not parts.hostname or parts.username or parts.password:
        raise UnsafeTarget(_l("Give a full address, without a user name or password."), "url")
    if current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"]:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        raise UnsafeTarget(_l("That host name does not resolve."), "url") from None
    for _family, _type, _proto, _name, address in found:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global or ip.is_multicast:
            raise UnsafeTarget(
                _l("Webhooks go to public internet addresses only, not private networks."),
                "url",
            )


def add_endpoint(campaign: Campaign, user_id: int, url: str, events: list[str]) -> WebhookEndpoint:
    known = {e.value for e in WebhookEvent if e != WebhookEvent.TEST}
    if not events or not set(events) <= known:
        raise RuleError(_l("Choose at least one event."), "events")
    if len(url) > 2000:
        raise RuleError(_l("That address is too long."), "url")
    check_target(url)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    endpoint = WebhookEndpoint(
        campaign_id=campaign.id,
        url=url.strip(),
        secret=secret,
        events=" ".join(sorted(set(events))),
        created_by=user_id,
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def endpoints_of(campaign: Campaign) -> list[WebhookEndpoint]:
    return list(
        db.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.campaign_id == campaign.id, WebhookEndpoint.removed_at.is_(None))
            .order_by(WebhookEndpoint.id)
        )
    )


def endpoint_of(campaign: Campaign, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.campaign_id != campaign.id or endpoint.removed_at:
        raise RuleError(_l("That webhook does not exist."))
    return endpoint


def remove_endpoint(campaign: Campaign, endpoint_id: int) -> None:
    endpoint = endpoint_of(campaign, endpoint_id)
    endpoint.removed_at = utcnow()
    changed(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.FAILED, last_error="endpoint removed")
    )
    db.session.flush()


def deliveries_of(endpoint: WebhookEndpoint, limit: int = 20) -> list[WebhookDelivery]:
    return list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


# ---- Queueing, inside the change's transaction ------------------------------------------


def subscribed(campaign_ids: set[int], event: str) -> set[int]:
    """Which of these campaigns have a live endpoint for `event`."""
    if not campaign_ids:
        return set()
    rows = db.session.execute(
        select(WebhookEndpoint.campaign_id, WebhookEndpoint.events).where(
            WebhookEndpoint.campaign_id.in_(campaign_ids), WebhookEndpoint.removed_at.is_(None)
        )
    ).all()
    return {campaign_id for campaign_id, events in rows if event in events.split()}


def queue(campaign_id: int, event: WebhookEvent, data: dict[str, Any]) -> int:
    """A delivery of `event` to each endpoint of the campaign that subscribed to it;
    sent after commit. Returns how many were queued."""
    targets = [
        e
        for e in db.session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.campaign_id == campaign_id, WebhookEndpoint.removed_at.is_(None)
            )
        )
        if event.value in e.event_set
    ]
    return _queue_for(targets, event, data)


def queue_one(endpoint: WebhookEndpoint, event: WebhookEvent, data: dict[str, Any]) -> int:
    """The "send test event" button: one delivery to this endpoint, whatever it chose."""
    return _queue_for([endpoint], event, data)


def _queue_for(targets: list[WebhookEndpoint], event: WebhookEvent, data: dict[str, Any]) -> int:
    if not targets:
        return 0
    now = utcnow()
    for endpoint in targets:
        message_id = "msg_" + secrets.token_urlsafe(18)
        body = {
            "id": message_id,
            "type": event.value,
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": data,
        }
        db.session.add(
            WebhookDelivery(
                endpoint_id=endpoint.id,
                message_id=message_id,
                event=event.value,
                payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                next_attempt_at=now,
            )
        )
    db.session.flush()
    enqueue_after_commit(deliver_due)
    return len(targets)


# ---- Delivering, after commit -------------------------------------------------------------


@app_job
def deliver_due() -> int:
    """Send every delivery that is due; each attempt is claimed with a guarded UPDATE
    and committed before the request goes out, so two workers never send one twice
    at once. Returns how many were attempted."""
    now = utcnow()
    due = db.session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.id)
        .limit(BATCH)
    ).all()
    attempted = 0
    for delivery_id in due:
        delivery = db.session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            continue
        claimed = changed(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.attempts == delivery.attempts,
            )
            .values(attempts=delivery.attempts + 1, next_attempt_at=now + timedelta(minutes=5))
        )
        db.session.commit()
        if not claimed:
            continue
        db.session.refresh(delivery)
        _attempt(delivery)
        db.session.commit()
        attempted += 1
    return attempted


def _attempt(delivery: WebhookDelivery) -> None:
    endpoint = delivery.endpoint
    now = utcnow()
    code, error = None, ""
    try:
        check_target(endpoint.url)
        body = delivery.payload.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "Counterfund-Webhooks/1",
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(endpoint.secret).sign(delivery.message_id, now, body),
        }
        with requests.post(
            endpoint.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
        ) as response:
            code = response.status_code
    except UnsafeTarget as exc:
        error = str(exc.message)
    except requests.RequestException as exc:
        error = type(exc).__name__
    delivery.last_status_code = code
    delivery.last_error = error[:200]
    if code is not None and 200 <= code < 300:
        delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, now
        return
    waited = delivery.attempts - 1
    delay = BACKOFF[min(waited, len(BACKOFF) - 1)]
    if now + timedelta(seconds=delay) - delivery.created_at > GIVE_UP_AFTER:
        delivery.status = DeliveryStatus.FAILED
        log.info("webhook delivery %s failed for good after %d attempts", delivery.id, waited + 1)
    else:
        delivery.next_attempt_at = now + timedelta(seconds=delay)

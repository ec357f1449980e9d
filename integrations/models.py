"""Personal API tokens, webhook endpoints and their deliveries."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from core.clock import utcnow
from core.extensions import Model
from core.types import UTCDateTime, enum_check


class Scope(enum.StrEnum):
    BACKERS = "backers:read"
    SETTLEMENT = "settlement:read"
    WEBHOOKS = "webhooks:manage"


SCOPE_LABELS = {
    Scope.BACKERS: _l("Read backers' chosen names and messages (never their addresses)"),
    Scope.SETTLEMENT: _l("Read settlement status"),
    Scope.WEBHOOKS: _l("Manage webhooks"),
}


class ApiToken(Model):
    """A committee member's personal token. Only a SHA-256 of it is kept: it is 256
    random bits, so no slow hash is needed, and a copy of the database gives nobody
    a usable token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(12))  # shown, to tell tokens apart
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated Scope values
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    @property
    def scope_set(self) -> set[str]:
        return set(self.scopes.split())

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > utcnow()


class WebhookEvent(enum.StrEnum):
    PLEDGE_CREATED = "pledge.created"
    PLEDGE_CANCELLED = "pledge.cancelled"
    CAMPAIGN_FUNDED = "campaign.funded"
    CAMPAIGN_FAILED = "campaign.failed"
    CAMPAIGN_SETTLED = "campaign.settled"
    LEDGER_ENTRY = "ledger.entry"
    UPDATE_PUBLISHED = "update.published"
    TEST = "test"  # the "send test event" button


class WebhookEndpoint(Model):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    # Standard Webhooks secret ("whsec_" + base64): needed to sign, so kept as is.
    secret: Mapped[str] = mapped_column(String(80))
    events: Mapped[str] = mapped_column(Text)  # space-separated WebhookEvent values
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def event_set(self) -> set[str]:
        return set(self.events.split())


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retried for a day, then given up


class WebhookDelivery(Model):
    """One event for one endpoint, queued in the transaction that caused it (a change
    rolled back queues nothing) and sent by a job after commit, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (enum_check("status", DeliveryStatus, "status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(40), unique=True)  # webhook-id header
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # the exact body sent, every attempt
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship()

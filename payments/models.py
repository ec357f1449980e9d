from __future__ import annotations

import enum
from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import Model
from core.money import Money
from core.types import UTCDateTime, enum_check


class PledgeStatus(enum.StrEnum):
    PENDING = "pending"  # card not saved yet
    ACTIVE = "active"  # card saved; counts towards the campaign
    CANCELLED = "cancelled"  # by the supporter (or an abandoned card form)
    CHARGING = "charging"  # an attempt is claimed; its idempotency key is stored
    CHARGED = "charged"
    FAILED = "failed"  # declined; retried within the window
    NEEDS_AUTHENTICATION = "needs_authentication"  # the issuer wants the supporter
    DROPPED = "dropped"  # never collected after the retry window
    RELEASED = "released"  # campaign not funded or cancelled: card detached
    REFUNDED = "refunded"
    PAUSED = "paused"  # a standing pledge its supporter paused: no period charges it
    # The cardholder's bank took the charge back (a chargeback); back to charged if the
    # bank gives it back.
    DISPUTED = "disputed"


PLEDGE_STATUS_LABELS = {
    PledgeStatus.PENDING: _l("Waiting for card"),
    PledgeStatus.ACTIVE: _l("Active"),
    PledgeStatus.CANCELLED: _l("Cancelled"),
    PledgeStatus.CHARGING: _l("Being charged"),
    PledgeStatus.CHARGED: _l("Charged"),
    PledgeStatus.FAILED: _l("Card declined: please update your card"),
    PledgeStatus.NEEDS_AUTHENTICATION: _l("Your bank asks you to confirm the payment"),
    PledgeStatus.DROPPED: _l("Not collected"),
    PledgeStatus.RELEASED: _l("Released: not charged"),
    PledgeStatus.REFUNDED: _l("Refunded"),
    PledgeStatus.PAUSED: _l("Paused: no period charges it until you resume it"),
    PledgeStatus.DISPUTED: _l("Taken back by the cardholder's bank (disputed)"),
}


CARD_BRAND_NAMES = {
    "amex": "American Express",
    "diners": "Diners Club",
    "discover": "Discover",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}


# What each event in a pledge's history means to its supporter (the manage page).
# Every transition and note of payments.lifecycle has one (a test checks).
EVENT_LABELS = {
    "created": _l("Pledge made"),
    "activated": _l("Card saved: pledge active"),
    "card_not_saved": _l("Card not saved"),
    "card_replaced": _l("Card replaced"),
    "amount_changed": _l("Amount changed"),
    "cancelled": _l("Cancelled"),
    "abandoned": _l("Card form not finished: pledge ended"),
    "cancelled_unfinished": _l("The campaign ended before the card was saved"),
    "released": _l("Released: not charged"),
    "charge_claimed": _l("Being charged"),
    "charge_claimed_on_session": _l("Being charged, with your confirmation"),
    "charge_charged": _l("Charged"),
    "charge_failed": _l("Card declined"),
    "charge_needs_authentication": _l("Your bank asks you to confirm the payment"),
    "charge_dropped": _l("Not collected"),
    "charge_authenticated": _l("Confirmed with your bank: charged"),
    "authentication_failed": _l("Your bank did not confirm the payment"),
    "dropped": _l("Not collected"),
    "card_replaced_for_retry": _l("New card: trying again"),
    "charge_recorded_late": _l("Charge recorded late, then refunded"),
    "refunded": _l("Refunded"),
    "refunded_elsewhere": _l("Refunded at the payment processor"),
    "dispute_opened": _l("Disputed by the cardholder's bank"),
    "dispute_funds_withdrawn": _l("Dispute: money taken back by the bank"),
    "dispute_funds_reinstated": _l("Dispute: money given back"),
    "charged_back": _l("Dispute: money taken back by the bank"),
    "charge_reinstated": _l("Dispute: money given back"),
    "dispute_closed": _l("Dispute closed"),
    "reminder_sent": _l("Reminder sent"),
    "period_charge_opened": _l("The period met its threshold: charge due"),
    "paused": _l("Paused"),
    "resumed": _l("Resumed"),
}


class Visibility(enum.StrEnum):
    NAME = "name"
    PSEUDONYM = "pseudonym"
    ANONYMOUS = "anonymous"


class Pledge(Model):
    __tablename__ = "pledges"
    __table_args__ = (
        Index("ix_pledges_parent_period", "parent_id", "period", unique=True),
        # The campaign page's most recent backers, newest first, however many there are.
        Index("ix_pledges_campaign_recent", "campaign_id", "activated_at", "id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        enum_check("status", PledgeStatus),
        enum_check("visibility", Visibility),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # What URLs and Stripe metadata carry: not guessable, not a count of our pledges.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The hidden token of the form that created it: a double submit finds this pledge.
    submission_key: Mapped[str] = mapped_column(String(64), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    guest_email: Mapped[str | None] = mapped_column(String(254))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # No default: a pledge begins only through payments.lifecycle.begin, which sets it.
    status: Mapped[str] = mapped_column(String(20), index=True)
    visibility: Mapped[str] = mapped_column(String(20), default=Visibility.ANONYMOUS)
    public_name: Mapped[str] = mapped_column(String(80), default="")
    public_message: Mapped[str] = mapped_column(Text, default="")
    private_message: Mapped[str] = mapped_column(Text, default="")
    # The interface language the supporter pledged in: their emails are written in it.
    locale: Mapped[str] = mapped_column(String(12), default="", server_default="")
    backend: Mapped[str] = mapped_column(String(20))
    provider_customer_id: Mapped[str | None] = mapped_column(String(255))
    provider_setup_id: Mapped[str | None] = mapped_column(String(255), index=True)
    provider_payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_brand: Mapped[str] = mapped_column(String(20), default="")
    card_last4: Mapped[str] = mapped_column(String(4), default="")
    # A keyed hash of the card's fingerprint (payments.privacy.card_tag): one card
    # behind many addresses is one backer in a matching round. Never published.
    card_tag: Mapped[str | None] = mapped_column(String(64))
    # Settlement: the current attempt's number and idempotency key are stored before
    # the provider is called; a crashed attempt is finished with the same key.
    charge_attempts: Mapped[int] = mapped_column(Integer, default=0)
    charge_key: Mapped[str | None] = mapped_column(String(80))
    charging_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_charge_id: Mapped[str | None] = mapped_column(String(255))
    charged_amount: Mapped[int | None] = mapped_column(BigInteger)
    fee_amount: Mapped[int | None] = mapped_column(BigInteger)
    # The processor's fee is not known yet (Stripe's balance transaction comes later):
    # the sweep and the charge.updated webhook record it when it is.
    fee_pending: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    # The provider's payment waiting for the supporter's bank (3-D Secure): the
    # authenticate page runs its next action in the browser; its outcome is recorded
    # once, by the return page or the webhook, whichever comes first.
    provider_action_id: Mapped[str | None] = mapped_column(String(255))
    charged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_code: Mapped[str] = mapped_column(String(60), default="")
    retry_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the supporter fixes their card after a decline: retry at once.
    retry_requested: Mapped[bool] = mapped_column(default=False)
    # Bumped to revoke every manage link sent so far.
    link_version: Mapped[int] = mapped_column(Integer, default=1)
    # A standing pledge to a recurring campaign: never charged itself; each period
    # that meets its threshold opens one charge of it (a pledge with `parent_id` set to
    # this one's id and `period` to the period's number; unique together).
    recurring: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    parent_id: Mapped[int | None] = mapped_column(Integer)
    period: Mapped[int | None] = mapped_column(Integer)
    # The supporter's own end for a standing pledge: no period ending after it charges it.
    recurring_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()
    user: Mapped[User | None] = relationship()
    events: Mapped[list[PledgeEvent]] = relationship(
        back_populates="pledge", order_by="PledgeEvent.id", viewonly=True
    )

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def charged(self) -> Money | None:
        return Money(self.charged_amount, self.currency) if self.charged_amount else None

    @property
    def card_brand_name(self) -> str:
        """The card network as people write it (brand names are not translated)."""
        return CARD_BRAND_NAMES.get(self.card_brand, self.card_brand.capitalize())

    @property
    def email(self) -> str:
        return self.user.email if self.user is not None else (self.guest_email or "")

    @property
    def status_label(self) -> str:
        return str(PLEDGE_STATUS_LABELS[PledgeStatus(self.status)])

    @property
    def shown_as(self) -> str:
        """How the supporter appears in public: never their email."""
        if self.visibility == Visibility.ANONYMOUS or not self.public_name:
            return str(_l("Anonymous"))
        return self.public_name

    def __repr__(self) -> str:
        return f"<Pledge {self.id} {self.status}>"


# Pledges that count towards their campaign's total, as its chart draws it.
COUNTED_STATUSES = (
    PledgeStatus.ACTIVE,
    PledgeStatus.CHARGING,
    PledgeStatus.CHARGED,
    PledgeStatus.FAILED,
    PledgeStatus.NEEDS_AUTHENTICATION,
)


class PledgeDailyTotal(Model):
    """What a campaign's counted pledges add up to per day of activation (UTC), kept by
    database triggers on `pledges` (migration 7d3e5f1a9c20) whoever writes a pledge, so
    the chart reads a row per day however many pledges there are."""

    __tablename__ = "pledge_daily_totals"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class PledgeEvent(Model):
    """Append-only history of a pledge's state (UPDATE/DELETE refused on PostgreSQL)."""

    __tablename__ = "pledge_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    # No default: payments.lifecycle writes every event, and says what it has to say.
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    pledge: Mapped[Pledge] = relationship(back_populates="events")

    @property
    def label(self) -> str:
        label = EVENT_LABELS.get(self.kind)
        return str(label) if label is not None else self.kind.replace("_", " ")


class ProcessedWebhookEvent(Model):
    """Each provider event id is handled once; the unique id is the guard."""

    __tablename__ = "processed_webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    event_type: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dispute(Model):
    """A chargeback the supporter's bank opened, as the processor last told us: what
    operators see and answer (evidence). Its money is on the ledger (payments.disputes);
    nothing here is public or personal."""

    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(60), default="")
    evidence_due_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when operators sent their evidence from the operators' page (the text goes
    # to the processor only; it is not kept here).
    evidence_submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    pledge: Mapped[Pledge] = relationship()

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def open(self) -> bool:
        return self.status in OPEN_DISPUTE_STATUSES

    @property
    def answerable(self) -> bool:
        """Stripe takes evidence while a dispute waits for a response."""
        return self.status in ("needs_response", "warning_needs_response")


OPEN_DISPUTE_STATUSES = (
    "warning_needs_response",
    "warning_under_review",
    "needs_response",
    "under_review",
)

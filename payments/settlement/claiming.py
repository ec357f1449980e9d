"""Claiming: pledges move to `charging` with their idempotency key stored, and commit,
before any provider call."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Row, Select, String, and_, case, cast, literal, or_, select, update

from core.clock import utcnow
from core.extensions import db
from core.money import Money
from payments import lifecycle
from payments.models import Pledge, PledgeStatus


@dataclass(frozen=True)
class Claim:
    pledge_id: int
    public_id: str
    amount: Money
    customer_id: str
    payment_method_id: str
    charge_key: str
    attempt: int
    recovering: bool  # an earlier attempt with this key may have reached the provider
    on_session: bool = False


_CLAIM_COLUMNS = (
    Pledge.id,
    Pledge.public_id,
    Pledge.amount,
    Pledge.currency,
    Pledge.provider_customer_id,
    Pledge.provider_payment_method_id,
    Pledge.charge_key,
    Pledge.charge_attempts,
)


def _next_attempt() -> dict[str, Any]:
    """A new attempt: its number and the idempotency key derived from it, in SQL:
    `pledge-<id>-attempt-<n>`, or for a period's charge of a standing pledge
    `pledge-<standing pledge id>-period-<number>-attempt-<n>`."""
    attempt = Pledge.charge_attempts + 1
    whose = case(
        (
            Pledge.parent_id.is_not(None),
            cast(Pledge.parent_id, String) + literal("-period-") + cast(Pledge.period, String),
        ),
        else_=cast(Pledge.id, String),
    )
    return {
        "charge_attempts": attempt,
        "charge_key": literal("pledge-") + whose + literal("-attempt-") + cast(attempt, String),
    }


def _claimable(campaign_id: int, now: datetime):
    def candidates(source: PledgeStatus, wanted: int | None) -> Select[Any]:
        ready = Pledge.status == PledgeStatus.ACTIVE
        if source == PledgeStatus.FAILED:
            ready = and_(
                Pledge.status == PledgeStatus.FAILED,
                or_(Pledge.retry_requested, Pledge.retry_until <= now),
            )
        return (
            select(Pledge.id)
            # A standing pledge is never charged itself: its periods' charges are.
            .where(Pledge.campaign_id == campaign_id, ready, Pledge.recurring.is_(False))
            .order_by(Pledge.id)
            .limit(wanted)
            .with_for_update(skip_locked=True)
        )

    return candidates


def claim_batch(campaign_id: int, size: int) -> list[Claim]:
    """Claim up to `size` pledges to charge; commits, so the keys are stored first."""
    now = utcnow()
    lease = now - timedelta(seconds=current_app.config["CHARGE_LEASE_SECONDS"])
    # Crashed attempts first: same key, and a lookup at the provider before any call.
    # (They stay `charging`: a new lease, not a transition.)
    stale = (
        select(Pledge.id)
        .where(
            Pledge.campaign_id == campaign_id,
            Pledge.status == PledgeStatus.CHARGING,
            Pledge.charging_since <= lease,
        )
        .order_by(Pledge.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    recovered = db.session.execute(
        update(Pledge)
        .where(
            Pledge.id.in_(stale.scalar_subquery()),
            Pledge.status == PledgeStatus.CHARGING,
            Pledge.charging_since <= lease,
        )
        .values(charging_since=now)
        .returning(*_CLAIM_COLUMNS)
        .execution_options(synchronize_session=False)
    ).all()
    fresh: list[Row[Any]] = []
    if len(recovered) < size:
        fresh = lifecycle.move(
            "charge_claimed",
            _claimable(campaign_id, now),
            limit=size - len(recovered),
            values={**_next_attempt(), "charging_since": now, "retry_requested": False},
            returning=_CLAIM_COLUMNS[1:],
            detail=lambda row: row.charge_key,
        )
    db.session.commit()
    return [_claim(row, recovering=True) for row in recovered] + [
        _claim(row, recovering=False) for row in fresh
    ]


def claim_for_authentication(pledge_id: int) -> Claim | None:
    """The supporter is here to authenticate: claim their pledge for an on-session
    charge (a new attempt, so a new key). Commits."""
    rows = lifecycle.move(
        "charge_claimed_on_session",
        pledge_id,
        values={**_next_attempt(), "charging_since": utcnow()},
        returning=_CLAIM_COLUMNS[1:],
        detail=lambda row: row.charge_key,
    )
    if not rows:
        db.session.rollback()
        return None
    db.session.commit()
    return replace(_claim(rows[0], recovering=False), on_session=True)


def _claim(row: Any, recovering: bool) -> Claim:
    return Claim(
        pledge_id=row.id,
        public_id=row.public_id,
        amount=Money(row.amount, row.currency),
        customer_id=row.provider_customer_id or "",
        payment_method_id=row.provider_payment_method_id or "",
        charge_key=row.charge_key,
        attempt=row.charge_attempts,
        recovering=recovering,
    )

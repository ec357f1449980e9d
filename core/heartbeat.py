"""When background work last ran, kept in the database (which outlives Redis), so an
operator can see a stall: `flask health` and `/healthz?deep=1`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.extensions import Model, changed, db
from core.types import UTCDateTime


class Heartbeat(Model):
    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)


def beat(name: str) -> None:
    """Record that `name` ran now (in the caller's transaction)."""
    now = utcnow()
    moved = changed(update(Heartbeat).where(Heartbeat.name == name).values(beat_at=now))
    if not moved:
        db.session.add(Heartbeat(name=name, beat_at=now))


def last_beat(name: str) -> datetime | None:
    return db.session.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == name))

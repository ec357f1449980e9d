"""One-click unsubscribe from the emails that are not transactional (campaign updates
to backers, the reminder before a deadline).

An opt-out is stored as a keyed hash of the address with a topic and a scope (a
campaign's id, or "" for every campaign), so the table holds no address. Links carry a
signed token naming the same three things; they work without a login, from any mail
client, including the RFC 8058 one-click POST that mail clients send on their own.
Feature packages register their topics with a label (`register_topic`); core knows
none of them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from flask import current_app
from sqlalchemy import String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.extensions import Model, db
from core.signed import make_token, read_token
from core.types import UTCDateTime
from core.urls import public_url_for

# An unsubscribe link keeps working as long as anyone might keep the email.
LINK_MAX_AGE = 5 * 365 * 24 * 3600
TOPICS: dict[str, object] = {}  # topic -> its label (a lazy string), for the page


class EmailOptOut(Model):
    __tablename__ = "email_optouts"
    __table_args__ = (UniqueConstraint("address_key", "topic", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address_key: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def register_topic(topic: str, label: object) -> None:
    TOPICS[topic] = label


def address_key(address: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    message = ("optout\x1f" + address.strip().casefold()).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def unsubscribe_url(address: str, topic: str, scope: str = "") -> str:
    token = make_token("unsubscribe", {"a": address_key(address), "t": topic, "s": scope})
    return public_url_for("core.unsubscribe", token=token)


def read(token: str) -> tuple[str, str, str]:
    """(address key, topic, scope) of a link; raises core.signed.LinkError."""
    data = read_token("unsubscribe", token, LINK_MAX_AGE)
    if data.get("t") not in TOPICS:
        from core.signed import LinkError

        raise LinkError(expired=False)
    return str(data.get("a")), str(data["t"]), str(data.get("s", ""))


def opt_out(key: str, topic: str, scope: str) -> None:
    """Idempotent: a second click (or the mail client's POST and the person's) is fine."""
    try:
        with db.session.begin_nested():
            db.session.add(EmailOptOut(address_key=key, topic=topic, scope=scope))
    except IntegrityError:
        pass  # opted out already


def opted_out(addresses: Iterable[str], topic: str, scope: str = "") -> set[str]:
    """Which of `addresses` asked for no more `topic` emails in `scope` (or anywhere)."""
    by_key = {address_key(a): a for a in addresses}
    if not by_key:
        return set()
    keys = db.session.scalars(
        select(EmailOptOut.address_key).where(
            EmailOptOut.address_key.in_(list(by_key)),
            EmailOptOut.topic == topic,
            EmailOptOut.scope.in_([scope, ""]),
        )
    )
    return {by_key[k] for k in keys}

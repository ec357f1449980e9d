"""Email through a transactional outbox.

Services `queue()` a message in the same transaction as the change it reports, so an
email is never sent for a change that was rolled back. After the request (or job)
commits, `deliver_pending()` sends what is waiting: by SMTP when SMTP_HOST is set,
otherwise as .eml files under the instance folder (the demo's "mailbox"). Logs name the
message id and subject only, never the recipient.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from flask import current_app, g, has_request_context
from sqlalchemy import String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.extensions import db
from core.types import UTCDateTime

log = logging.getLogger(__name__)


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # What the message is about, for tests and operators (no personal data).
    topic: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


def queue(recipient: str, subject: str, body: str, topic: str = "") -> OutboxMessage:
    message = OutboxMessage(recipient=recipient, subject=subject, body=body, topic=topic)
    db.session.add(message)
    db.session.flush()
    if has_request_context():
        g.setdefault("outbox_ids", []).append(message.id)
    return message


def queue_many(messages: list[tuple[str, str, str, str]]) -> None:
    """Many (recipient, subject, body, topic) at once; delivered by the next sweep."""
    if messages:
        db.session.execute(
            insert(OutboxMessage),
            [
                {"recipient": r, "subject": s, "body": b, "topic": t, "created_at": utcnow()}
                for r, s, b, t in messages
            ],
        )


def outbox_folder() -> Path:
    folder = Path(current_app.config["OUTBOX_FOLDER"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _as_email(message: OutboxMessage) -> EmailMessage:
    email = EmailMessage()
    email["From"] = current_app.config["MAIL_FROM"]
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Message-ID"] = f"<outbox-{message.id}@counterfund>"
    # 8bit keeps links intact and readable in the .eml files (quoted-printable folds them).
    email.set_content(message.body, cte="8bit")
    return email


def _send_smtp(emails: list[EmailMessage]) -> None:
    config = current_app.config
    smtp_class = smtplib.SMTP_SSL if config["SMTP_SSL"] else smtplib.SMTP
    with smtp_class(config["SMTP_HOST"], config["SMTP_PORT"], timeout=30) as smtp:
        if config["SMTP_STARTTLS"]:
            smtp.starttls()
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        for email in emails:
            smtp.send_message(email)


def deliver_pending(ids: list[int] | None = None, limit: int = 100) -> int:
    """Send undelivered messages (these ids, or the oldest), one small transaction each.

    Each message is claimed with a guarded UPDATE before it is sent, so two processes
    delivering at once never send it twice; a failed send rolls the claim back and
    the message waits for the next delivery.
    """
    if ids is None:
        candidates = db.session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.delivered_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
        ).all()
    else:
        candidates = ids
    delivered = 0
    for message_id in candidates:
        claimed = db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_(None))
            .values(delivered_at=utcnow())
        )
        if claimed.rowcount != 1:
            db.session.rollback()
            continue  # someone else sent it
        message = db.session.get(OutboxMessage, message_id)
        topic = message.topic or "email"
        try:
            _send(message)
        except Exception:
            db.session.rollback()
            raise
        db.session.commit()
        log.info("outbox: delivered message %s (%s)", message_id, topic)
        delivered += 1
    db.session.rollback()  # end the read transaction, if any
    return delivered


def _send(message: OutboxMessage) -> None:
    email = _as_email(message)
    if current_app.config["SMTP_HOST"]:
        _send_smtp([email])
    else:
        (outbox_folder() / f"{message.id:08d}.eml").write_bytes(bytes(email))


def deliver_after_request(response):
    """after_request hook: the view has committed; send what it queued."""
    ids = g.pop("outbox_ids", None)
    if ids and response.status_code < 500:
        try:
            deliver_pending(ids)
        except Exception:  # delivery is retried by the next sweep
            db.session.rollback()
            log.exception("outbox: delivery failed; messages stay queued")
    return response

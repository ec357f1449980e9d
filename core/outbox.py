"""Email through a transactional outbox.

Services `queue()` a message in the same transaction as the change it reports, so an
email is never sent for a change that was rolled back. Once that transaction commits, a
job (`deliver_waiting`: the RQ worker in production, the web process's thread in the
embedded default, at once in tests) sends it, so a request never waits for mail; the
sweep's `deliver_pending()` sends whatever a lost job left waiting. By SMTP when
SMTP_HOST is set, otherwise as .eml files under the instance folder (the demo's
"mailbox"). Logs name the message id and topic only, never the recipient or a link.

One bad message never stops the others: a message that fails is retried with
exponential backoff (OUTBOX_RETRY_SECONDS, doubling, at most six hours apart) and,
after OUTBOX_MAX_ATTEMPTS failures, set aside for an operator (`flask outbox`,
`/healthz?deep=1`); every other message keeps flowing. Headers are built by the
standard library's header registry from values cleaned of line breaks and controls.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import Integer, String, Text, delete, func, insert, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.extensions import Model, changed, db
from core.jobs import app_job, enqueue_after_commit
from core.text import single_line
from core.types import UTCDateTime

log = logging.getLogger(__name__)
POLICY = policy.default.clone(max_line_length=998)


class OutboxMessage(Model):
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # The same message laid out in HTML (core.mail); empty for plain-text-only ones.
    html_body: Mapped[str] = mapped_column(Text, default="", server_default="")
    # What the message is about, for tests and operators (no personal data).
    topic: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Failed OUTBOX_MAX_ATTEMPTS times: waits for an operator, never blocks the rest.
    set_aside_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The error's kind only (an SMTP error's text can carry the address).
    last_error: Mapped[str] = mapped_column(String(120), default="", server_default="")
    # For emails one may stop (core.optouts): the List-Unsubscribe header's link.
    unsubscribe_url: Mapped[str] = mapped_column(Text, default="", server_default="")


def queue(
    recipient: str,
    subject: str,
    body: str,
    topic: str = "",
    html: str = "",
    unsubscribe_url: str = "",
) -> OutboxMessage:
    message = OutboxMessage(
        recipient=recipient,
        subject=subject,
        body=body,
        topic=topic,
        html_body=html,
        unsubscribe_url=unsubscribe_url,
    )
    db.session.add(message)
    db.session.flush()
    enqueue_after_commit(deliver_waiting, job_id="outbox-delivery", coalesce=True)
    return message


@app_job
def deliver_waiting() -> None:
    """The job: send every message that waits, until none does. One such job is queued
    at a time however many requests queue mail meanwhile (a surge of pledges makes a
    few jobs, not one per pledge); a message committed as it ends waits for the sweep."""
    while deliver_pending(limit=500):
        pass


def queue_many(messages: list[tuple[str, str, str, str, str, str]]) -> None:
    """Many (recipient, subject, body, topic, html, unsubscribe url) at once; delivered
    by the next sweep."""
    if messages:
        now = utcnow()
        db.session.execute(
            insert(OutboxMessage),
            [
                {"recipient": r, "subject": s, "body": b, "topic": t, "html_body": h}
                | {"unsubscribe_url": u, "created_at": now}
                for r, s, b, t, h, u in messages
            ],
        )


def outbox_folder() -> Path:
    folder = Path(current_app.config["OUTBOX_FOLDER"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _as_email(message: OutboxMessage) -> EmailMessage:
    # policy.default: headers through the header registry. Lines may reach RFC 5322's
    # hard limit (998): a List-Unsubscribe link longer than 78 characters would
    # otherwise be turned into encoded words that mail clients cannot follow.
    email = EmailMessage(policy=POLICY)
    email["From"] = current_app.config["MAIL_FROM"]
    email["To"] = single_line(message.recipient)
    email["Subject"] = single_line(message.subject)
    email["Date"] = format_datetime(message.created_at or utcnow())
    email["Message-ID"] = f"<outbox-{message.id}@counterfund>"
    if message.unsubscribe_url:
        # RFC 2369 and RFC 8058: mail clients offer a one-click unsubscribe.
        email["List-Unsubscribe"] = f"<{single_line(message.unsubscribe_url)}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # 8bit keeps links intact and readable in the .eml files (quoted-printable folds them).
    email.set_content(message.body, cte="8bit")
    if message.html_body:
        # The HTML part in base64: the .eml files stay readable (and greppable) as
        # their text part; mail clients show the HTML.
        email.add_alternative(message.html_body, subtype="html", cte="base64")
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


def _waiting():
    """Undelivered, not set aside, and due (never tried, or its backoff has passed)."""
    return (
        OutboxMessage.delivered_at.is_(None),
        OutboxMessage.set_aside_at.is_(None),
        or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= utcnow()),
    )


def deliver_pending(ids: list[int] | None = None, limit: int = 100) -> int:
    """Send waiting messages (these ids, or the oldest due), one small transaction each.

    Each message is claimed with a guarded UPDATE before it is sent, so two processes
    delivering at once never send it twice. A failed send rolls its claim back, counts
    an attempt and schedules the next one (or sets the message aside); the loop goes
    on with the other messages.
    """
    query = select(OutboxMessage.id).where(*_waiting()).order_by(OutboxMessage.id)
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(ids))
    candidates = db.session.scalars(query.limit(limit)).all()
    delivered = 0
    for message_id in candidates:
        claimed = changed(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, *_waiting())
            .values(delivered_at=utcnow())
        )
        if claimed != 1:
            db.session.rollback()
            continue  # someone else sent it
        message = db.session.get_one(OutboxMessage, message_id)
        topic = message.topic or "email"
        try:
            _send(message)
        except Exception as exc:
            db.session.rollback()
            _count_failure(message_id, exc)
            continue
        db.session.commit()
        log.info("outbox: delivered message %s (%s)", message_id, topic)
        delivered += 1
    db.session.rollback()  # end the read transaction, if any
    return delivered


def _count_failure(message_id: int, exc: Exception) -> None:
    config = current_app.config
    message = db.session.get_one(OutboxMessage, message_id)
    attempts = (message.attempts or 0) + 1
    now = utcnow()
    values: dict = {"attempts": attempts, "last_error": type(exc).__name__[:120]}
    if attempts >= config["OUTBOX_MAX_ATTEMPTS"]:
        values["set_aside_at"] = now
        log.error(
            "outbox: message %s (%s) set aside after %s failed attempts (%s)",
            message_id,
            message.topic,
            attempts,
            type(exc).__name__,
        )
    else:
        wait = min(config["OUTBOX_RETRY_SECONDS"] * 2 ** (attempts - 1), 6 * 3600)
        values["next_attempt_at"] = now + timedelta(seconds=wait)
        log.warning(
            "outbox: message %s (%s) failed (%s); retry in %s s",
            message_id,
            message.topic,
            type(exc).__name__,
            wait,
        )
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values))
    db.session.commit()


def set_aside() -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.set_aside_at.is_not(None), OutboxMessage.delivered_at.is_(None))
            .order_by(OutboxMessage.id)
        )
    )


def retry(message_id: int) -> bool:
    """An operator gives a set-aside message another round of attempts."""
    moved = changed(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_(None))
        .values(set_aside_at=None, next_attempt_at=None, attempts=0)
    )
    db.session.commit()
    return bool(moved)


def purge(older_than: timedelta) -> int:
    """Delete delivered messages older than `older_than` (their text holds addresses and
    links); undelivered ones stay. Returns how many went."""
    gone = changed(
        delete(OutboxMessage).where(
            OutboxMessage.delivered_at.is_not(None),
            OutboxMessage.delivered_at < utcnow() - older_than,
        )
    )
    db.session.commit()
    return gone


def health() -> tuple[bool, dict]:
    """Set-aside mail is reported, not fatal: everything else still flows."""
    waiting, aside = db.session.execute(
        select(
            func.count(OutboxMessage.id).filter(OutboxMessage.set_aside_at.is_(None)),
            func.count(OutboxMessage.id).filter(OutboxMessage.set_aside_at.is_not(None)),
        ).where(OutboxMessage.delivered_at.is_(None))
    ).one()
    return True, {"waiting": waiting, "set_aside": aside}


def _send(message: OutboxMessage) -> None:
    email = _as_email(message)
    if current_app.config["SMTP_HOST"]:
        _send_smtp([email])
    else:
        (outbox_folder() / f"{message.id:08d}.eml").write_bytes(bytes(email))

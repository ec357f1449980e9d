"""The one module that composes email: every message is a template under
templates/emails/ (a `subject` block and a plain-text `body` block), rendered in the
recipient's language; the HTML part is the same text laid out by emails/layout.html,
its links made clickable. Messages are queued through the outbox, so they are sent
only once the change they report is committed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import current_app, has_request_context, render_template
from flask_babel import force_locale, get_locale, gettext

from core import outbox
from core.i18n import INTERFACE_LOCALES

_URL = re.compile(r"https?://[^\s<>\"]+")


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def recipient_locale(stored: str | None) -> str:
    """The language to write in: the one stored with the pledge or account when it is
    one we speak, else the current visitor's, else the default."""
    if stored and stored in INTERFACE_LOCALES:
        return stored
    if has_request_context():
        return str(get_locale())
    return INTERFACE_LOCALES[0]


def compose(
    template: str, locale: str | None = None, unsubscribe_url: str = "", **context: Any
) -> Email:
    with force_locale(recipient_locale(locale)):
        tmpl = current_app.jinja_env.get_template(f"emails/{template}.txt")
        ctx = tmpl.new_context(context)  # the environment's globals come with it
        subject = "".join(tmpl.blocks["subject"](ctx)).strip()
        text = "".join(tmpl.blocks["body"](ctx)).strip()
        if unsubscribe_url:
            text += "\n\n" + gettext(
                "You receive these emails because you backed this campaign. Stop them with "
                "one click: %(link)s",
                link=unsubscribe_url,
            )
        html = render_template(
            "emails/layout.html",
            subject=subject,
            paragraphs=[_linked(p) for p in text.split("\n\n")],
        )
    return Email(subject, text + "\n", html)


def _linked(paragraph: str) -> list[tuple[str, str]]:
    """A paragraph as (kind, text) pieces: "text" or "link", for the HTML layout. Only
    our own links (on PUBLIC_URL) become clickable: a URL inside an organizer's text,
    a campaign title, stays text, never a link sent in our name."""
    ours = current_app.config["PUBLIC_URL"].rstrip("/") + "/"
    pieces, last = [], 0
    for match in _URL.finditer(paragraph):
        if not match.group(0).startswith(ours):
            continue
        pieces.append(("text", paragraph[last : match.start()]))
        pieces.append(("link", match.group(0)))
        last = match.end()
    pieces.append(("text", paragraph[last:]))
    return pieces


def send(
    recipient: str,
    template: str,
    *,
    locale: str | None = None,
    topic: str = "",
    unsubscribe_url: str = "",
    **context: Any,
) -> None:
    """Queue one message. With `unsubscribe_url` (core.optouts) the message says how to
    stop such emails and carries List-Unsubscribe headers."""
    email = compose(template, locale, unsubscribe_url, **context)
    outbox.queue(
        recipient,
        email.subject,
        email.text,
        topic=topic or template,
        html=email.html,
        unsubscribe_url=unsubscribe_url,
    )


def send_many(
    messages: list[tuple[str, str, str | None, dict[str, Any]]],
    topic: str,
    unsubscribe_urls: dict[str, str] | None = None,
) -> None:
    """Many (recipient, template, locale, context) in one insert; `unsubscribe_urls`
    maps recipients to their one-click link, for emails one may stop."""
    links = unsubscribe_urls or {}
    composed = []
    for recipient, template, locale, context in messages:
        link = links.get(recipient, "")
        email = compose(template, locale, link, **context)
        composed.append((recipient, email.subject, email.text, topic, email.html, link))
    outbox.queue_many(composed)

"""Server-side lifetimes for login sessions: an idle timeout and an absolute one.

The session cookie is signed, not stored, so its lifetime is enforced from two
timestamps inside it: when the login happened and when the person was last seen.
Either one past its limit ends the session (and logging out or changing the password
still kills every cookie at once, through the session version).
"""

from __future__ import annotations

from flask import current_app, session
from flask_login import current_user, logout_user

from core.clock import utcnow

STARTED = "_started"
SEEN = "_seen"
# Rewriting the cookie on every request is wasteful; a minute's precision is plenty.
SEEN_PRECISION = 60


RESET_UNTIL = "_reset_until"
# How long a login link lets its holder choose a new password without the old one.
RESET_WINDOW = 15 * 60


def allow_password_reset() -> None:
    """This session came in through an emailed login link: for a few minutes it may set
    a new password without the current one (the link proved the mailbox)."""
    session[RESET_UNTIL] = int(utcnow().timestamp()) + RESET_WINDOW


def password_reset_allowed() -> bool:
    return int(session.get(RESET_UNTIL, 0)) > utcnow().timestamp()


def mark_login() -> None:
    now = int(utcnow().timestamp())
    session[STARTED] = now
    session[SEEN] = now


def enforce_session_lifetime() -> None:
    if not current_user.is_authenticated:
        return
    config = current_app.config
    now = int(utcnow().timestamp())
    started = session.get(STARTED, 0)
    seen = session.get(SEEN, 0)
    if (
        now - started > config["SESSION_ABSOLUTE_TIMEOUT"]
        or now - seen > config["SESSION_IDLE_TIMEOUT"]
    ):
        logout_user()
        session.clear()
        return
    if now - seen >= SEEN_PRECISION:
        session[SEEN] = now

"""Account operations. Services flush; the view that calls them commits."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from accounts import emails
from accounts.models import User
from accounts.passwords import DUMMY_HASH, hash_password, password_problem, verify_password
from core.clock import utcnow
from core.extensions import changed, db
from core.signed import make_token, read_token
from core.urls import public_url_for
from core.work import RuleError


class AccountError(RuleError):
    """An account rule refused the request (the message names the field's problem)."""


def identifier_key(raw: str) -> str:
    """What rate limits count a typed identifier as: NFKC-normalised and case-folded
    (so full-width letters count as their ASCII twins), then keyed-hashed, so
    limiter storage and its logs never hold an address."""
    folded = unicodedata.normalize("NFKC", raw or "").casefold().strip()
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, folded.encode(), hashlib.sha256).hexdigest()[:32]


def normalise_email(raw: str) -> str:
    """Lower-cased, syntax-checked address; raises AccountError when malformed.

    Deliverability is not checked: that would need DNS, and we do not call out.
    """
    try:
        result = validate_email((raw or "").strip(), check_deliverability=False)
    except EmailNotValidError:
        raise AccountError(_l("Enter a valid email address."), "email") from None
    return result.normalized.lower()


def find_user_by_email(email: str) -> User | None:
    try:
        email = normalise_email(email)
    except AccountError:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def register_user(email: str, display_name: str, password: str) -> User | None:
    """An account waiting for its address to be confirmed, and the confirmation email;
    or, when the address already has an account, an email to its owner instead. The
    caller answers both the same way, so registration never tells whether an address
    has an account. Returns the new user, or None."""
    email = normalise_email(email)
    display_name = display_name.strip()
    # Checked before looking the address up: a refusal must not depend on it.
    problem = password_problem(password, email=email, display_name=display_name)
    if problem:
        raise AccountError(problem, "password")
    existing = db.session.scalar(select(User).where(User.email == email))
    if existing is not None:
        emails.send(
            existing.email, "account-exists", login_link_page=public_url_for("accounts.login_link")
        )
        return None
    user = User(email=email, display_name=display_name, password_hash=hash_password(password))
    db.session.add(user)
    db.session.flush()
    send_confirmation(user)
    return user


CONFIRM_MAX_AGE = 3 * 24 * 3600
LOGIN_LINK_MAX_AGE = 15 * 60


def send_confirmation(user: User) -> None:
    token = make_token("confirm-email", {"u": user.id, "e": user.email})
    emails.send(
        user.email,
        "confirm-email",
        name=user.display_name,
        link=public_url_for("accounts.confirm_email", token=token),
    )


def confirm_email(token: str) -> User | None:
    """The user whose address this link confirms, newly confirmed; None when the link
    is invalid or was used already (a used link is no login credential)."""
    data = read_token("confirm-email", token, CONFIRM_MAX_AGE)
    user = db.session.get(User, data.get("u"))
    if user is None or user.email != data.get("e") or user.email_verified_at is not None:
        return None
    user.email_verified_at = utcnow()
    db.session.flush()
    return user


def send_login_link(email: str) -> None:
    """A link that logs its holder in once, within LOGIN_LINK_MAX_AGE. Nothing is sent
    (and nothing said) when no account has the address."""
    user = find_user_by_email(email)
    if user is None:
        return
    token = make_token("login", {"u": user.id, "v": user.link_version})
    emails.send(
        user.email,
        "login-link",
        name=user.display_name,
        link=public_url_for("accounts.login_with_link", token=token),
        minutes=LOGIN_LINK_MAX_AGE // 60,
    )


def use_login_link(token: str) -> User | None:
    data = read_token("login", token, LOGIN_LINK_MAX_AGE)
    moved = changed(
        update(User)
        .where(User.id == data.get("u"), User.link_version == data.get("v"))
        .values(link_version=User.link_version + 1)
    )
    if moved != 1:
        return None  # used already
    user = db.session.get_one(User, data["u"])
    db.session.refresh(user)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()  # the link reached the address
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    user = find_user_by_email(email)
    if user is None:
        verify_password(DUMMY_HASH, password)
        return None
    return user if verify_password(user.password_hash, password) else None


def end_all_sessions(user: User) -> None:
    """Every cookie issued for this user so far stops working."""
    user.session_version = (user.session_version or 1) + 1
    db.session.flush()


def change_password(user: User, current: str | None, new: str) -> None:
    """`current` None: a reset, allowed only to a session that came in through an
    emailed login link (the caller checks)."""
    if current is not None and not verify_password(user.password_hash, current):
        raise AccountError(_l("Your current password is not correct."), "current_password")
    problem = password_problem(new, email=user.email, display_name=user.display_name)
    if problem:
        raise AccountError(problem, "new_password")
    user.password_hash = hash_password(new)
    end_all_sessions(user)


def set_moderator(email: str, flag: bool) -> User:
    user = find_user_by_email(email)
    if user is None:
        raise AccountError(_l("No account has that email address."), "email")
    user.is_moderator = flag
    db.session.flush()
    return user


def load_session_user(session_id: str) -> User | None:
    """Flask-Login's user loader: 'id:version', refused when the version moved on."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version):
        return None
    return user

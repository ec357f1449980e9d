"""Account operations. Services flush; the view that calls them commits."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from accounts.models import User
from accounts.passwords import DUMMY_HASH, hash_password, password_problem, verify_password
from core.extensions import db


class AccountError(ValueError):
    def __init__(self, message, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


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


def register_user(email: str, display_name: str, password: str) -> User:
    email = normalise_email(email)
    display_name = display_name.strip()
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AccountError(_l("An account with this email address already exists."), "email")
    problem = password_problem(password, email=email, display_name=display_name)
    if problem:
        raise AccountError(problem, "password")
    user = User(email=email, display_name=display_name, password_hash=hash_password(password))
    db.session.add(user)
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


def change_password(user: User, current: str, new: str) -> None:
    if not verify_password(user.password_hash, current):
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

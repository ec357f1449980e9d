"""Account operations. Services flush; the view that calls them commits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from accounts import emails, signals
from accounts.models import User
from accounts.passwords import DUMMY_HASH, hash_password, password_problem, verify_password
from core.clock import utcnow
from core.extensions import changed, db
from core.i18n import current_locale
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
    user = User(
        email=email,
        display_name=display_name,
        password_hash=hash_password(password),
        locale=str(current_locale()),
    )
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
    note_login(user)
    return user


def note_login(user: User) -> None:
    """A login: notifications are written in the language the person uses now."""
    user.locale = str(current_locale())
    db.session.flush()


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
    note_login(user)
    return user


def authenticate(email: str, password: str) -> User | None:
    user = find_user_by_email(email)
    if user is None or user.closed_at is not None:
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
    if user is None or user.closed_at is not None or user.session_version != int(version):
        return None
    return user


EMAIL_CHANGE_MAX_AGE = 3 * 24 * 3600


def request_email_change(user: User, new_email: str, password: str | None) -> str:
    """Email a confirmation link to the new address; nothing changes until it is
    opened. When the address already has an account, its owner is told instead, and
    the caller answers the same way (so this never reveals who has an account).
    `password` None: the session came in through an emailed login link."""
    if password is not None and not verify_password(user.password_hash, password):
        raise AccountError(_l("Your current password is not correct."), "current_password")
    new_email = normalise_email(new_email)
    if new_email == user.email:
        raise AccountError(_l("This is the address your account has already."), "email")
    if db.session.scalar(select(User.id).where(User.email == new_email)) is not None:
        emails.send(new_email, "email-taken")
        return new_email
    token = make_token("change-email", {"u": user.id, "from": user.email, "to": new_email})
    emails.send(
        new_email,
        "change-email",
        name=user.display_name,
        link=public_url_for("accounts.confirm_email_change", token=token),
    )
    return new_email


def confirm_email_change(token: str) -> User | None:
    """The user whose address the link changes, changed; None when the link was used
    already (the account's address is no longer the one it was sent from). Raises
    AccountError when the new address was taken meanwhile."""
    data = read_token("change-email", token, EMAIL_CHANGE_MAX_AGE)
    user = db.session.get(User, data.get("u"))
    if user is None or user.closed_at is not None or user.email != data.get("from"):
        return None
    new_email = str(data.get("to"))
    if db.session.scalar(select(User.id).where(User.email == new_email)) is not None:
        raise AccountError(_l("Another account has this address now."))
    old_email = user.email
    user.email = new_email
    user.email_verified_at = utcnow()
    # Login links sent to the old address stop working.
    user.link_version = (user.link_version or 0) + 1
    db.session.flush()
    emails.send(old_email, "email-changed", name=user.display_name, new_email=new_email)
    return user


def close_account(user: User, password: str | None) -> None:
    """Close the account: what other packages hold for the person is ended or erased
    (they may refuse, with the reason), then the account row is emptied and can never
    log in again. The public ledger is untouched: it never held personal data.
    `password` None: the session came in through an emailed login link."""
    if password is not None and not verify_password(user.password_hash, password):
        raise AccountError(_l("Your current password is not correct."), "current_password")
    address, name = user.email, user.display_name
    signals.account_closing.send(user)
    user.email = f"closed-{user.id}@closed.invalid"
    user.display_name = str(_l("Former member"))
    user.password_hash = hash_password(secrets.token_urlsafe(32))
    user.email_verified_at = None
    user.is_moderator = False
    user.closed_at = utcnow()
    user.link_version = (user.link_version or 0) + 1
    end_all_sessions(user)
    emails.send(address, "account-closed", name=name)


def export_account(user: User) -> dict[str, Any]:
    """Everything held about the person, as JSON (GDPR articles 15 and 20)."""
    data: dict[str, Any] = {
        "account": {
            "email": user.email,
            "display_name": user.display_name,
            "created_at": user.created_at.isoformat(),
            "email_confirmed_at": user.email_verified_at.isoformat()
            if user.email_verified_at
            else None,
            "moderator": bool(user.is_moderator),
        }
    }
    for _receiver, (section, content) in signals.account_exporting.send(user):
        data[section] = content
    return data

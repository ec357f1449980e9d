"""Personal API tokens: created with scopes and an expiry, shown once, kept as a hash,
revocable; a bearer token authenticates /api/v1/organizer/ requests (never a cookie,
so those endpoints need no CSRF protection)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import abort, request
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from accounts.models import User
from core.clock import utcnow
from core.extensions import changed, db
from core.work import RuleError
from integrations.models import ApiToken, Scope

PREFIX = "cf_"
EXPIRY_DAYS = (30, 90, 365)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(user: User, name: str, scopes: list[str], days: int) -> tuple[ApiToken, str]:
    """The new token and its secret, which is never shown again."""
    if not scopes or not set(scopes) <= {s.value for s in Scope}:
        raise RuleError(_l("Choose at least one permission."), "scopes")
    if days not in EXPIRY_DAYS:
        raise RuleError(_l("Choose when the token expires."), "days")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name.strip() or "token",
        prefix=secret[:10],
        token_hash=_digest(secret),
        scopes=" ".join(sorted(set(scopes))),
        expires_at=utcnow() + timedelta(days=days),
    )
    db.session.add(token)
    db.session.flush()
    return token, secret


def tokens_of(user: User) -> list[ApiToken]:
    return list(
        db.session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        )
    )


def revoke(user: User, token_id: int) -> None:
    changed(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def from_request(scope: Scope) -> User:
    """The user behind the request's bearer token, if it is live and has `scope`;
    otherwise a 401 (no usable token) or 403 (not this scope)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        abort(401, description="send a personal API token: Authorization: Bearer cf_…")
    token = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(header[7:].strip()))
    )
    if token is None or not token.is_usable or token.user.closed_at is not None:
        abort(401, description="this token is unknown, expired or revoked")
    if scope not in token.scope_set:
        abort(403, description=f"this token does not have the {scope} scope")
    token.last_used_at = utcnow()
    return token.user

"""Signed, expiring links that let a guest supporter manage their pledge."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from core.clock import utcnow

SALT = "counterfund.pledge-manage"


class LinkError(ValueError):
    def __init__(self, expired: bool):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


class _ClockSigner(TimestampSigner):
    """Reads the app's clock, so link expiry is tested by moving time, not waiting."""

    def get_timestamp(self) -> int:
        return int(utcnow().timestamp())


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT, signer=_ClockSigner)


def make_manage_token(public_id: str, link_version: int) -> str:
    return _serializer().dumps({"p": public_id, "v": link_version})


def read_manage_token(token: str) -> tuple[str, int]:
    try:
        data = _serializer().loads(token, max_age=current_app.config["PLEDGE_LINK_MAX_AGE"])
    except SignatureExpired:
        raise LinkError(expired=True) from None
    except BadSignature:
        raise LinkError(expired=False) from None
    if not isinstance(data, dict) or not isinstance(data.get("p"), str):
        raise LinkError(expired=False)
    return data["p"], int(data.get("v", 0))

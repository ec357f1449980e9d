"""Signed, expiring links that let a guest supporter manage their pledge."""

from __future__ import annotations

from flask import current_app

from core.signed import LinkError, make_token, read_token

__all__ = ["LinkError", "make_manage_token", "manage_key", "read_manage_token"]

# The salt guest links have always used: links already sent keep working.
PURPOSE = "pledge-manage"


def make_manage_token(public_id: str, link_version: int) -> str:
    return make_token(PURPOSE, {"p": public_id, "v": link_version})


def read_manage_token(token: str) -> tuple[str, int]:
    data = read_token(PURPOSE, token, current_app.config["PLEDGE_LINK_MAX_AGE"])
    if not isinstance(data.get("p"), str):
        raise LinkError(expired=False)
    return data["p"], int(data.get("v", 0))


def manage_key(public_id: str, user_id: int | None, link_version: int) -> str:
    """What a pledge's page URL carries: its id for an account's own pledge (the login
    protects it), a signed link for a guest's."""
    return public_id if user_id else make_manage_token(public_id, link_version)

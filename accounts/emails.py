"""The emails accounts send (templates/emails/accounts/), in the language of the
request that causes them: the person asking is the one who reads them."""

from __future__ import annotations

from typing import Any

from core import mail

TEMPLATES = {
    "confirm-email": "accounts/confirm_email",
    "account-exists": "accounts/account_exists",
    "login-link": "accounts/login_link",
    "change-email": "accounts/change_email",
    "email-taken": "accounts/email_taken",
    "email-changed": "accounts/email_changed",
    "account-closed": "accounts/account_closed",
}


def send(to: str, kind: str, **params: Any) -> None:
    """Queue message `kind` to `to`, in the current interface language."""
    mail.send(to, TEMPLATES[kind], topic=kind, **params)

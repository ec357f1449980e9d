"""The emails accounts send, each a subject and a body with named parameters, queued
through the outbox (sent after the request's commit)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from core import outbox

MESSAGES = {
    "confirm-email": (
        _l("Confirm your Counterfund account"),
        _l(
            "Hello %(name)s,\n\nTo finish creating your Counterfund account, open this link "
            "within three days:\n%(link)s\n\nIf you did not ask for an account, ignore this "
            "email: nothing happens without the link."
        ),
    ),
    "account-exists": (
        _l("Someone tried to create a Counterfund account with your address"),
        _l(
            "Someone (perhaps you) tried to create a Counterfund account with this address, "
            "which already has one. Nothing was changed.\n\nIf it was you, log in as usual, "
            "or ask for a login link by email here:\n%(login_link_page)s"
        ),
    ),
    "login-link": (
        _l("Your Counterfund login link"),
        _l(
            "Hello %(name)s,\n\nThis link logs you in once, within %(minutes)d minutes:\n"
            "%(link)s\n\nIf you did not ask for it, ignore this email: your account is safe, "
            "and whoever asked cannot use the link without access to your mailbox."
        ),
    ),
}


def send(to: str, kind: str, **params) -> None:
    """Queue message `kind` to `to`, in the current interface language."""
    outbox.queue_message(to, MESSAGES[kind], kind, **params)

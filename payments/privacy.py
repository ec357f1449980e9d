"""How supporters appear in public records: as they chose, or as an unlinkable tag."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app

from payments.models import Pledge, Visibility


def _keyed(*parts: object) -> str:
    key = current_app.config["PUBLIC_TAG_KEY"].encode()
    message = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def supporter_tag(pledge: Pledge) -> str:
    """The same supporter gets the same tag within one campaign and a different one in
    every other campaign, so their pledges cannot be linked across campaigns."""
    who = f"user:{pledge.user_id}" if pledge.user_id else f"guest:{pledge.guest_email}"
    return "supporter-" + _keyed("supporter", pledge.campaign_id, who)[:12]


def public_counterparty(pledge: Pledge) -> str:
    if pledge.visibility != Visibility.ANONYMOUS and pledge.public_name:
        return pledge.public_name
    return supporter_tag(pledge)


def round_backer_tag(round_id: int, pledge: Pledge) -> str:
    """A backer in a matching round's published contributions: one card (or, for a
    card saved without a fingerprint, one person) is one tag per round and campaign,
    so the tags link nothing across campaigns or rounds."""
    who = pledge.card_tag or (
        f"user:{pledge.user_id}" if pledge.user_id else f"guest:{pledge.guest_email}"
    )
    return "backer-" + _keyed("round-backer", round_id, pledge.campaign_id, who)[:12]


def card_tag(fingerprint: str) -> str | None:
    """A card's fingerprint as kept: keyed, so the stored value matches no provider's
    record and is useless without the key."""
    return _keyed("card", fingerprint)[:32] if fingerprint else None


def public_reference(kind: str, pledge_id: int, attempt: int | str = "") -> str:
    """A stable reference for a ledger entry that reveals no row id or provider id."""
    return f"{kind}-{_keyed(kind, pledge_id, attempt)[:20]}"

"""What payments hold about a person with an account, for closing the account and for
exporting their data (receivers of accounts.signals)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from accounts.models import User
from core.extensions import db
from core.jobs import enqueue_after_commit
from payments import cards, jobs, services
from payments.models import Pledge, PledgeStatus, Visibility

# Settlement has these pledges in hand (a charge under way, or a declined card being
# retried): they end within the retry window, and the account can be closed then.
IN_SETTLEMENT = (PledgeStatus.CHARGING, PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION)


def _pledges(user: User) -> list[Pledge]:
    return list(
        db.session.scalars(select(Pledge).where(Pledge.user_id == user.id).order_by(Pledge.id))
    )


def close(user: User, **_: Any) -> None:
    """Pledges not charged yet are cancelled (the usual rules apply: a funded
    all-or-nothing campaign's last day refuses it, with the reason); every pledge is
    emptied of what the person wrote and of its card's details, and saved cards are
    detached at the provider after the commit. The ledger keeps what it published."""
    pledges = _pledges(user)
    for pledge in pledges:
        if pledge.status in IN_SETTLEMENT:
            raise services.PledgeError(
                _l(
                    "Your pledge to “%(title)s” is being charged or retried now. You can "
                    "close your account once its settlement is over (within a week).",
                    title=pledge.campaign.title,
                ),
                "confirm",
            )
    for pledge in pledges:
        if pledge.status in services.CANCELLABLE:
            cards.cancel(pledge, tell_supporter=False)  # the closing email says it
        elif pledge.provider_customer_id and pledge.provider_payment_method_id:
            enqueue_after_commit(
                jobs.release_card, pledge.provider_customer_id, pledge.provider_payment_method_id
            )
        pledge.visibility = Visibility.ANONYMOUS
        pledge.public_name = ""
        pledge.public_message = ""
        pledge.private_message = ""
        pledge.card_brand = ""
        pledge.card_last4 = ""
    db.session.flush()


def export(user: User, **_: Any) -> tuple[str, list[dict[str, Any]]]:
    return "pledges", [
        {
            "campaign": pledge.campaign.slug,
            "amount": pledge.amount,
            "currency": pledge.currency,
            "status": pledge.status,
            "shown_as": pledge.visibility,
            "public_name": pledge.public_name,
            "public_message": pledge.public_message,
            "private_message_to_organizers": pledge.private_message,
            "card": f"{pledge.card_brand_name} {pledge.card_last4}".strip(),
            "charged": pledge.charged_amount,
            "charged_at": pledge.charged_at.isoformat() if pledge.charged_at else None,
            "created_at": pledge.created_at.isoformat(),
            "history": [
                {"event": event.kind, "at": event.created_at.isoformat(), "amount": event.amount}
                for event in pledge.events
            ],
        }
        for pledge in _pledges(user)
    ]

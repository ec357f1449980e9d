"""What supporters (and operators) are told about their pledges, in the language the
supporter pledged in (stored with the pledge). The texts are templates under
templates/emails/pledges/; core.mail renders and queues them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import current_app

from core import mail
from core.money import Money
from core.urls import public_url_for
from payments.models import Pledge
from payments.tokens import manage_key

# Settlement outcomes that tell the supporter something, by template.
OUTCOME_TEMPLATES = {
    "charged": "pledges/charged",
    "failed": "pledges/failed",
    "needs_authentication": "pledges/needs_authentication",
    "dropped": "pledges/dropped",
    "refunded_at_once": "pledges/refunded_at_once",
}
OUTCOME_TOPICS = {"refunded_at_once": "pledge-refunded"}


def manage_link(pledge: Pledge) -> str:
    """The pledge's page as an absolute URL on PUBLIC_URL, for emails."""
    key = manage_key(pledge.public_id, pledge.user_id, pledge.link_version)
    return public_url_for("payments.manage", key=key)


def _context(pledge: Pledge) -> dict[str, Any]:
    return {"pledge": pledge, "campaign": pledge.campaign, "link": manage_link(pledge)}


def _tell(pledge: Pledge, template: str, topic: str, **extra: Any) -> None:
    """One message to a pledge's supporter, in the language they pledged in."""
    mail.send(
        pledge.email,
        f"pledges/{template}",
        locale=pledge.locale,
        topic=topic,
        **(_context(pledge) | extra),
    )


def confirmation(pledge: Pledge) -> None:
    _tell(pledge, "confirmation", "pledge-confirmation")


def amount_changed(pledge: Pledge, previous: Money) -> None:
    _tell(pledge, "amount_changed", "pledge-amount-changed", previous=previous)


def card_replaced(pledge: Pledge) -> None:
    _tell(pledge, "card_replaced", "pledge-card-replaced")


def cancelled(pledge: Pledge) -> None:
    campaign_link = public_url_for("campaigns.detail", slug=pledge.campaign.slug)
    _tell(pledge, "cancelled", "pledge-cancelled", campaign_link=campaign_link)


def period_notice(pledge: Pledge, period: Any, looks_met: bool) -> None:
    _tell(
        pledge,
        "period_notice",
        "pledge-period-notice",
        period=period,
        looks_met=looks_met,
    )


def paused_after_failures(pledge: Pledge) -> None:
    _tell(
        pledge,
        "paused_after_failures",
        "pledge-paused",
        periods=current_app.config["RECURRING_MAX_FAILED_PERIODS"],
    )


def queue_outcome(pledge: Pledge, outcome: str) -> None:
    template = OUTCOME_TEMPLATES.get(outcome)
    if template is not None:
        topic = OUTCOME_TOPICS.get(outcome, f"pledge-{outcome}")
        _tell(pledge, template.removeprefix("pledges/"), topic)


def queue_outcomes(pledges: Sequence[Pledge], outcome: str) -> None:
    """The same outcome for many pledges, in one insert."""
    mail.send_many(
        [(p.email, OUTCOME_TEMPLATES[outcome], p.locale, _context(p)) for p in pledges],
        topic=f"pledge-{outcome}",
    )


def released(pledge: Pledge, reason: str) -> None:
    _tell(pledge, "released", "pledge-released", reason=reason)


def links(address: str, pledges: Sequence[Pledge]) -> None:
    """A guest's fresh manage links, in the language they ask in."""
    mail.send(
        address,
        "pledges/links",
        topic="pledge-links",
        links=[(p.campaign.title, p.money, manage_link(p)) for p in pledges],
    )


def tell_operators(subject: str, what: str) -> None:
    address = current_app.config.get("OPERATOR_EMAIL")
    if address:
        mail.send(
            address,
            "operators/alert",
            locale="en",
            topic="operator-alert",
            subject=subject,
            what=what,
        )

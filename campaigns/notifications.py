"""What a campaign's committee is told by email, each member in the language of their
last login: funded, failed, settled or released, reported, suspended (with the
moderators' reason), a disbursement waiting for their approval. These are service
notices to the people responsible for the money, so they carry no unsubscribe link.
Queued in the transaction of the change they report (core.outbox)."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from campaigns.models import Campaign, OrganizerRole, Permission, role_can
from core import mail
from core.urls import public_url_for

TEMPLATES = {
    "funded": "campaigns/funded",
    "failed": "campaigns/failed",
    "settled": "campaigns/settled",
    "released": "campaigns/released",
    "reported": "campaigns/reported",
    "suspended": "campaigns/suspended",
    "disbursement-waiting": "campaigns/disbursement_waiting",
    # A matching round's curators decided on the campaign's application.
    "round-accepted": "rounds/accepted",
    "round-refused": "rounds/refused",
    # Money returned to a supporter at the payment processor, outside Counterfund.
    "refunded-elsewhere": "campaigns/refunded_elsewhere",
    # A supporter's bank disputes a charge (a chargeback), at each step.
    "disputed": "campaigns/disputed",
}


def tell_committee(
    campaign: Campaign,
    event: str,
    *,
    except_user_id: int | None = None,
    permission: Permission | None = None,
    **context: Any,
) -> None:
    """Every member (who has `permission`, if given), but `except_user_id`."""
    members: list[User] = [
        organizer.user
        for organizer in campaign.organizers
        if organizer.user_id != except_user_id
        and organizer.user.closed_at is None
        and (permission is None or role_can(OrganizerRole(organizer.role), permission))
    ]
    for member in members:
        mail.send(
            member.email,
            TEMPLATES[event],
            locale=member.locale,
            topic=f"committee-{event}",
            name=member.display_name,
            title=campaign.title,
            link=public_url_for("campaigns.detail", slug=campaign.slug),
            **context,
        )


def send_invitation(email: str, inviter: User, title: str, role_label: str, link: str) -> None:
    """The email inviting someone onto a committee (a campaign's or a matching round's),
    in the inviter's language: we know nothing of the invitee's."""
    mail.send(
        email,
        "campaigns/committee_invitation",
        topic="committee-invitation",
        inviter=inviter.display_name,
        title=title,
        role=role_label.lower(),
        link=link,
    )

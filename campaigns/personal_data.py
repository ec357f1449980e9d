"""What campaigns hold about a person, for closing their account and for exporting
their data (receivers of accounts.signals)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from accounts.models import User
from campaigns import services
from campaigns.models import CampaignStatus, Organizer, OrganizerRole
from core.extensions import db

# A campaign in one of these states needs no committee any more.
FINISHED = (CampaignStatus.SETTLED, CampaignStatus.RELEASED, CampaignStatus.CANCELLED)


def _memberships(user: User) -> list[Organizer]:
    return list(
        db.session.scalars(
            select(Organizer).where(Organizer.user_id == user.id).order_by(Organizer.id)
        )
    )


def close(user: User, **_: Any) -> None:
    """The person leaves every committee. A draft only they own is cancelled (it was
    never public); a campaign only they own that has not finished refuses the closing:
    its supporters and its money need an owner until it has."""
    memberships = _memberships(user)
    running = []
    for membership in memberships:
        campaign = membership.campaign
        owners = [o for o in campaign.organizers if o.role == OrganizerRole.OWNER]
        if membership.role != OrganizerRole.OWNER or len(owners) > 1:
            continue
        if campaign.status == CampaignStatus.DRAFT:
            services.cancel(campaign)
        elif campaign.status not in FINISHED:
            running.append(campaign.title)
    if running:
        raise services.CampaignError(
            {
                "confirm": [
                    _l(
                        "You own “%(title)s”, which has not finished. Cancel it, or close "
                        "your account once it is settled or released.",
                        title=title,
                    )
                    for title in running
                ]
            }
        )
    for membership in memberships:
        membership.campaign.organizers.remove(membership)
    db.session.flush()


def export(user: User, **_: Any) -> tuple[str, list[dict[str, Any]]]:
    return "committees", [
        {
            "campaign": m.campaign.slug,
            "title": m.campaign.title,
            "role": m.role,
            "campaign_status": m.campaign.status,
        }
        for m in _memberships(user)
    ]

"""What an organizer's dashboard says about each of their campaigns: besides progress,
the things that need them (a draft to launch, a suspension to answer, disbursements
waiting for their approval) and the things worth knowing (private messages, a balance
to pay out). Other packages add their own through `register` (payments: messages;
ledger: disbursements), so campaigns need not know their models."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, url_for
from flask_babel import gettext as _

from accounts.models import User
from campaigns.models import Campaign, CampaignStatus, Permission, role_can
from core.clock import utcnow

# A live campaign this close to its deadline is worth an update to its backers.
ENDING_SOON = timedelta(days=3)


@dataclass(frozen=True)
class Item:
    text: str
    url: str
    needs_action: bool = False


Provider = Callable[[Sequence[Campaign], User], dict[int, list[Item]]]


def register(app, provider: Provider) -> None:
    app.extensions.setdefault("dashboard_items", []).append(provider)


def items_for(campaigns: Sequence[Campaign], user: User) -> dict[int, list[Item]]:
    """Each campaign's items, those needing action first."""
    found: dict[int, list[Item]] = defaultdict(list)
    for provider in [_campaign_items, *current_app.extensions.get("dashboard_items", [])]:
        for campaign_id, items in provider(campaigns, user).items():
            found[campaign_id].extend(items)
    return {cid: sorted(items, key=lambda i: not i.needs_action) for cid, items in found.items()}


def _campaign_items(campaigns: Sequence[Campaign], user: User) -> dict[int, list[Item]]:
    found: dict[int, list[Item]] = {}
    now = utcnow()
    for campaign in campaigns:
        page = url_for("campaigns.detail", slug=campaign.slug)
        role = campaign.role_of(user)
        if campaign.status == CampaignStatus.DRAFT and role_can(role, Permission.LAUNCH):
            found[campaign.id] = [Item(_("A draft: check it over, then launch it."), page, True)]
        elif campaign.status == CampaignStatus.SUSPENDED:
            found[campaign.id] = [
                Item(
                    _("Suspended by the moderators: %(reason)s", reason=campaign.suspension_reason),
                    page,
                    True,
                )
            ]
        elif (
            campaign.status == CampaignStatus.LIVE
            and now < campaign.deadline <= now + ENDING_SOON
            and role_can(role, Permission.POST_UPDATE)
        ):
            found[campaign.id] = [
                Item(
                    _("Ends soon: an update to its backers may bring the last pledges."),
                    url_for("campaigns.new_update", slug=campaign.slug),
                )
            ]
    return found

"""The organizers' dashboard: how many private messages each campaign's backers left,
and declined cards settlement is still retrying."""

from __future__ import annotations

from collections.abc import Sequence

from flask import url_for
from flask_babel import ngettext
from sqlalchemy import func, select

from accounts.models import User
from campaigns.dashboard import Item
from campaigns.models import Campaign
from core.extensions import db
from payments.models import Pledge, PledgeStatus
from payments.services import BACKED


def items(campaigns: Sequence[Campaign], user: User) -> dict[int, list[Item]]:
    ids = [c.id for c in campaigns if not c.is_draft]
    if not ids:
        return {}
    slugs = {c.id: c.slug for c in campaigns}
    messages = dict(
        db.session.execute(
            select(Pledge.campaign_id, func.count(Pledge.id))
            .where(
                Pledge.campaign_id.in_(ids),
                Pledge.status.in_(BACKED),
                Pledge.private_message != "",
            )
            .group_by(Pledge.campaign_id)
        ).all()
    )
    retrying = dict(
        db.session.execute(
            select(Pledge.campaign_id, func.count(Pledge.id))
            .where(
                Pledge.campaign_id.in_(ids),
                Pledge.status.in_([PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION]),
            )
            .group_by(Pledge.campaign_id)
        ).all()
    )
    found: dict[int, list[Item]] = {}
    for campaign_id in ids:
        entries = []
        if messages.get(campaign_id):
            entries.append(
                Item(
                    ngettext(
                        "%(num)d private message from backers",
                        "%(num)d private messages from backers",
                        messages[campaign_id],
                    ),
                    url_for("payments.backers", slug=slugs[campaign_id]),
                )
            )
        if retrying.get(campaign_id):
            entries.append(
                Item(
                    ngettext(
                        "%(num)d declined card is being retried: its supporter has been asked "
                        "to update it.",
                        "%(num)d declined cards are being retried: their supporters have been "
                        "asked to update them.",
                        retrying[campaign_id],
                    ),
                    url_for("payments.settlement_progress", slug=slugs[campaign_id]),
                )
            )
        if entries:
            found[campaign_id] = entries
    return found

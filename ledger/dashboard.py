"""The organizers' dashboard: disbursements waiting for this member's approval (the
two-person rule), and, for the treasurer, a settled campaign's balance to pay out."""

from __future__ import annotations

from collections.abc import Sequence

from flask import url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import func, select

from accounts.models import User
from campaigns.dashboard import Item
from campaigns.models import Campaign, CampaignStatus, Permission, role_can
from core.extensions import db
from core.i18n import format_money
from core.money import Money
from ledger import services as ledger
from ledger.disbursements import Disbursement, DisbursementStatus


def items(campaigns: Sequence[Campaign], user: User) -> dict[int, list[Item]]:
    approving = [
        c.id for c in campaigns if role_can(c.role_of(user), Permission.APPROVE_DISBURSEMENT)
    ]
    waiting = (
        dict(
            db.session.execute(
                select(Disbursement.campaign_id, func.count(Disbursement.id))
                .where(
                    Disbursement.campaign_id.in_(approving),
                    Disbursement.status == DisbursementStatus.PENDING,
                    Disbursement.recorded_by != user.id,
                )
                .group_by(Disbursement.campaign_id)
            ).all()
        )
        if approving
        else {}
    )
    found: dict[int, list[Item]] = {}
    for campaign in campaigns:
        entries = []
        if waiting.get(campaign.id):
            entries.append(
                Item(
                    ngettext(
                        "%(num)d disbursement waits for your approval",
                        "%(num)d disbursements wait for your approval",
                        waiting[campaign.id],
                    ),
                    url_for("disbursements.listing", slug=campaign.slug),
                    needs_action=True,
                )
            )
        if campaign.status == CampaignStatus.SETTLED and role_can(
            campaign.role_of(user), Permission.RECORD_DISBURSEMENT
        ):
            held = ledger.balance(ledger.campaign_account(campaign.id), campaign.currency)
            if held > 0:
                entries.append(
                    Item(
                        _(
                            "It holds %(m)s: record what you pay out, with the receipts.",
                            m=format_money(Money(held, campaign.currency)),
                        ),
                        url_for("disbursements.new", slug=campaign.slug),
                    )
                )
        if entries:
            found[campaign.id] = entries
    return found

"""Deciding a campaign at its deadline, and closing its settlement once nothing is open."""

from __future__ import annotations

from sqlalchemy import and_, case, func, or_, select, update

from campaigns import signals
from campaigns.models import Campaign, CampaignStatus, FundingModel
from campaigns.notifications import tell_committee
from campaigns.periods import Recurrence
from core.clock import utcnow
from core.extensions import changed, db
from payments.models import Pledge, PledgeStatus

OPEN_STATUSES = (
    PledgeStatus.ACTIVE,
    PledgeStatus.CHARGING,
    PledgeStatus.FAILED,
    PledgeStatus.NEEDS_AUTHENTICATION,
)


def _funded_condition():
    all_or_nothing = and_(
        Campaign.pledged_amount >= Campaign.goal_amount,
        or_(Campaign.min_backers.is_(None), Campaign.backer_count >= Campaign.min_backers),
    )
    return case(
        (Campaign.funding_model == FundingModel.ALL_OR_NOTHING, all_or_nothing),
        else_=Campaign.backer_count > 0,
    )


def decide(campaign_id: int) -> bool:
    """Fix the outcome of a campaign past its deadline. Deciding twice changes nothing.

    The outcome is computed inside the UPDATE, from the same row version it writes, so
    a pledge committed a moment before the deadline is always counted.
    """
    now = utcnow()
    result = changed(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == CampaignStatus.LIVE,
            Campaign.deadline <= now,
        )
        .values(
            status=case(
                (_funded_condition(), CampaignStatus.FUNDED.value),
                else_=CampaignStatus.UNFUNDED.value,
            ),
            decided_at=now,
            final_pledged_amount=Campaign.pledged_amount,
            final_backer_count=Campaign.backer_count,
        )
        .execution_options(synchronize_session=False)
    )
    if result != 1:
        return False
    campaign = db.session.get_one(Campaign, campaign_id, populate_existing=True)
    funded = campaign.status == CampaignStatus.FUNDED
    tell_committee(
        campaign,
        "funded" if funded else "failed",
        pledged=campaign.pledged,
        backers=campaign.backer_count,
    )
    signals.campaign_decided.send(campaign, funded=funded)
    return True


def due_campaign_ids() -> list[int]:
    """One-off campaigns past their deadline (recurring ones are decided by period)."""
    return list(
        db.session.scalars(
            select(Campaign.id)
            .where(
                Campaign.status == CampaignStatus.LIVE,
                Campaign.deadline <= utcnow(),
                Campaign.id.not_in(select(Recurrence.campaign_id)),
            )
            .order_by(Campaign.deadline)
        )
    )


def open_campaign_ids() -> list[int]:
    """Decided campaigns that still have work: charging, retrying or releasing."""
    return list(
        db.session.scalars(
            select(Campaign.id)
            .where(
                Campaign.status.in_(
                    [
                        CampaignStatus.FUNDED,
                        CampaignStatus.SETTLING,
                        CampaignStatus.UNFUNDED,
                    ]
                )
            )
            .order_by(Campaign.id)
        )
    )


def start_settling(campaign_id: int) -> None:
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.FUNDED)
        .values(status=CampaignStatus.SETTLING)
        .execution_options(synchronize_session=False)
    )


def finish_if_done(campaign_id: int) -> bool:
    """settling → settled, unfunded → released, once no pledge is open any more."""
    still_open = db.session.scalar(
        select(func.count(Pledge.id)).where(
            Pledge.campaign_id == campaign_id, Pledge.status.in_(OPEN_STATUSES)
        )
    )
    if still_open:
        return False
    done = changed(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status.in_(
                [CampaignStatus.FUNDED, CampaignStatus.SETTLING, CampaignStatus.UNFUNDED]
            ),
        )
        .values(
            status=case(
                (Campaign.status == CampaignStatus.UNFUNDED.value, CampaignStatus.RELEASED.value),
                else_=CampaignStatus.SETTLED.value,
            ),
            settled_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if done:
        campaign = db.session.get_one(Campaign, campaign_id, populate_existing=True)
        if campaign.status == CampaignStatus.SETTLED:
            tell_committee(campaign, "settled", collected=campaign.collected)
        else:
            tell_committee(campaign, "released")
        signals.campaign_finished.send(campaign, settled=campaign.status == CampaignStatus.SETTLED)
    db.session.commit()
    return bool(done)


def progress(campaign_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(Pledge.status, func.count(Pledge.id))
        .where(Pledge.campaign_id == campaign_id, Pledge.status != PledgeStatus.PENDING)
        .group_by(Pledge.status)
    ).all()
    return {status: count for status, count in rows}  # noqa: C416 - Row pairs

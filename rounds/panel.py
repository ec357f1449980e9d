"""What a campaign page shows of the rounds that accepted it: the badge, and while the
round runs an estimate of what one more pledge would bring in matching."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.models import Campaign
from core.clock import utcnow
from core.money import Money, exponent
from rounds import services
from rounds.models import Round, RoundStatus

# The pledge the estimate speaks of: five units of the currency (€5, R$5, ¥5…).
EXAMPLE_UNITS = 5


@dataclass(frozen=True)
class CampaignRound:
    round: Round
    example: Money
    estimate: Money | None  # while the round runs and the campaign takes pledges
    match: Money | None  # once final


def campaign_rounds(campaign: Campaign) -> list[CampaignRound]:
    shown = []
    for entry in services.rounds_of_campaign(campaign):
        round_ = entry.round
        example = Money(EXAMPLE_UNITS * 10 ** exponent(round_.currency), round_.currency)
        estimate = match = None
        if round_.status == RoundStatus.FINAL:
            match = Money(entry.match_amount or 0, round_.currency)
        elif campaign.is_live and round_.opens_at <= utcnow() < round_.closes_at:
            estimate = Money(services.estimate(round_, campaign, example.amount), round_.currency)
        shown.append(CampaignRound(round_, example, estimate, match))
    return shown

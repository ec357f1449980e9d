"""Demo matching rounds for `make run`, as timed steps that payments.demo replays in
time order with the rest of the demo's history: a quadratic round that ran over the
past month and was finalised (its matches on the ledger), and a capped-match round
open now, with an application waiting for the curators."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select

from accounts.models import User
from campaigns.models import Campaign, OrganizerRole
from core.extensions import db
from core.money import Money
from rounds import services
from rounds.models import Round

FUNDER_EMAIL = "council@example.org"

QUADRATIC: dict[str, Any] = {
    "name": "Eastgate Trades Council solidarity round",
    "funder": "Eastgate Trades Council",
    "description": (
        "The Trades Council's hardship reserve matches what many people give to the "
        "wage struggles of Eastgate's low-paid workers. **Quadratic**: the number of "
        "backers counts more than the size of the pledges; no campaign takes more than "
        "70 % of the pool, and pledges under €2 do not count."
    ),
    "sources": "Trades Council minutes, 3 November https://example.org/eastgate-tc/minutes",
    "rule": "quadratic",
    "max_share_bp": 7000,
    "min_contribution": 200,
}
QUADRATIC_POOL = 1500_00
QUADRATIC_CAMPAIGNS = [
    "back-pay-for-the-eastgate-bus-cleaners",
    "linden-road-school-kitchen-sick-pay",
]

CAPPED: dict[str, Any] = {
    "name": "Riverside Food Co-op winter match",
    "funder": "Riverside Food Co-op",
    "description": (
        "The co-op's members voted to match, one to one, what people pledge this winter "
        "to Riverside's strike and mutual-aid funds: up to €20 per pledge and per backer, "
        "up to €250 per campaign, first charged first matched."
    ),
    "sources": "Co-op general meeting vote https://example.org/riverside-coop/vote",
    "rule": "capped_match",
    "ratio_bp": 10_000,
    "cap_per_pledge": 20_00,
    "cap_per_backer": 20_00,
    "cap_per_campaign": 250_00,
}
CAPPED_POOL = 600_00
CAPPED_ACCEPTED = ["riverside-warehouse-strike-fund", "northside-winter-heating-fund"]
CAPPED_WAITING = ["legal-defence-for-the-dismissed-reps"]


def steps(now: datetime) -> list[tuple[datetime, Callable[[], None]]]:
    if _funder() is None:
        return []
    return [
        (
            now - timedelta(days=35),
            partial(
                _open,
                QUADRATIC,
                now - timedelta(days=35),
                now - timedelta(days=4),
                QUADRATIC_POOL,
                "bank transfer, reference TC-0411",
            ),
        ),
        (now - timedelta(days=24), partial(_join, QUADRATIC["name"], QUADRATIC_CAMPAIGNS, [])),
        (now - timedelta(days=3), partial(_finalise, QUADRATIC["name"])),
        (
            now - timedelta(days=2),
            partial(
                _open,
                CAPPED,
                now - timedelta(days=2),
                now + timedelta(days=25),
                CAPPED_POOL,
                "bank transfer, reference RFC-2211",
            ),
        ),
        (now - timedelta(days=1), partial(_join, CAPPED["name"], CAPPED_ACCEPTED, CAPPED_WAITING)),
    ]


def _funder() -> User | None:
    return db.session.scalar(select(User).where(User.email == FUNDER_EMAIL))


def _round(name: str) -> Round:
    return db.session.scalars(select(Round).where(Round.name == name)).one()


def _open(spec: dict, opens: datetime, closes: datetime, pool: int, receipt: str) -> None:
    funder = _funder()
    assert funder is not None
    round_ = services.open_round(
        funder,
        services.RoundDraft(currency="EUR", opens_at=opens, closes_at=closes, **spec),
    )
    services.record_pool(round_, Money(pool, "EUR"), receipt)


def _join(name: str, accepted: list[str], waiting: list[str]) -> None:
    """Each campaign's owner applies; the curators accept some and leave the rest."""
    round_ = _round(name)
    for slug in accepted + waiting:
        campaign = db.session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
        owner = next(o.user for o in campaign.organizers if o.role == OrganizerRole.OWNER)
        entry = services.apply(round_, campaign, owner)
        if slug in accepted:
            services.decide(round_, entry.id, accept=True)


def _finalise(name: str) -> None:
    services.finalise(_round(name))

"""Demo pledges for `make run`: real pledges through the simulated provider."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from campaigns.models import Campaign
from core.money import Money
from payments import services
from payments.backends import enter_simulated_card, get_backend
from payments.backends.simulated import DECLINED_ON_CHARGE, SUCCEEDS
from payments.models import Pledge

SUPPORTERS = [
    ("name", "Amina Y."),
    ("pseudonym", "night shift"),
    ("anonymous", ""),
    ("pseudonym", "a retired docker"),
    ("name", "Jo Castellano"),
    ("anonymous", ""),
    ("pseudonym", "Local 1199 member"),
    ("anonymous", ""),
]
# Amounts in whole units, per campaign: many small pledges acting together.
PLEDGES = {
    "riverside-warehouse-strike-fund": [25, 10, 50, 5, 20, 15, 100, 30],
    "living-wage-for-university-cleaners": [10, 5, 20, 8],
    "legal-defence-for-the-dismissed-reps": [50, 25, 40, 10, 10],
    "northside-winter-heating-fund": [20, 15, 5, 10, 25, 30],
    "open-tenant-organising-toolkit": [30, 20],
}


def load_demo_pledges() -> int:
    if get_backend().name != "simulated" or db_has_pledges():
        return 0
    made = 0
    for slug, amounts in PLEDGES.items():
        campaign = db_campaign(slug)
        if campaign is None:
            continue
        for n, units in enumerate(amounts):
            visibility, name = SUPPORTERS[n % len(SUPPORTERS)]
            pledge, _ = services.start_pledge(
                campaign,
                amount=Money.from_major(units, campaign.currency),
                submission_key=secrets.token_urlsafe(24),
                guest_email=f"supporter{n}@example.org",
                visibility=visibility,
                public_name=name,
                public_message="Solidarity!" if n % 3 == 0 else "",
            )
            session = services.start_card_setup(pledge)
            # One card in the demo saves fine but will be declined when charged.
            card = DECLINED_ON_CHARGE if n == 3 else SUCCEEDS
            services.card_saved(pledge, enter_simulated_card(session.setup_id, card))
            made += 1
    return made


def db_has_pledges() -> bool:
    from core.extensions import db

    return db.session.scalar(select(Pledge.id).limit(1)) is not None


def db_campaign(slug: str) -> Campaign | None:
    from core.extensions import db

    return db.session.scalar(select(Campaign).where(Campaign.slug == slug))

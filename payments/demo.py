"""Demo pledges for `make run`: real pledges through the simulated provider, and the
history of the campaigns whose deadlines have passed (settled, released, retrying),
replayed through the real settlement, refund and disbursement paths on a clock moved
to the moments they happened, so the public ledger starts populated and verifiable."""

from __future__ import annotations

import io
import secrets
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from flask import current_app
from PIL import Image, ImageDraw
from sqlalchemy import select

from accounts.models import User
from campaigns.demo import PAST_CAMPAIGNS
from campaigns.models import Campaign
from core import clock
from core.extensions import db
from core.money import Money
from ledger import batches, disbursements
from ledger import log as ledger_log
from payments import services
from payments.backends import enter_simulated_card, get_backend
from payments.backends.simulated import DECLINED_ON_CHARGE
from payments.jobs import advance_recurring, run_due_now
from payments.models import Pledge, PledgeStatus
from payments.refunds import refund

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
    # Past campaigns: (whole units, card).
    "back-pay-for-the-eastgate-bus-cleaners": [60, 80, 120, 45, 100, 75, 150, 50],
    "harbour-court-rent-strike-legal-fund": [20, 15, 30],
    "hospital-porters-hardship-fund": [10, 25, 15, 20, 5],
    "linden-road-school-kitchen-sick-pay": [5, 10, 5, 20, 10, 5, 15, 10, 5, 25],
}
# Standing pledges to the weekly strike fund: (whole euros, days after its launch).
RECURRING_PLEDGES = {
    "fairfield-bus-drivers-weekly-strike-pay": [(10, 0.1), (5, 0.2), (20, 0.5), (15, 8), (10, 9)]
}
# The last of them has a card that is declined: week 3 is still being charged (met).
RECURRING_DECLINED = {4}
# Which pledges of a past campaign carry a card that saves but is declined when charged.
DECLINED = {"hospital-porters-hardship-fund": {1, 3}}
DISBURSED_TO = "Eastgate Cleaners' Branch hardship account"
DISBURSED_FOR = "Back-pay advances to eight cleaners, as agreed at the branch meeting"
DISBURSED = 40_000
# What happened at a past moment, replayed in time order on a moved clock.
TimedSteps = list[tuple[datetime, Callable[[], None]]]


def load_demo_pledges() -> int:
    """Pledges on every demo campaign; the past campaigns are then settled. Commits."""
    if get_backend().name != "simulated" or db_has_pledges():
        return 0
    past = {spec["slug"] for spec in PAST_CAMPAIGNS}
    now = clock.utcnow()  # the replays below move the clock; this is when we are
    made = 0
    try:
        for slug, amounts in PLEDGES.items():
            campaign = db_campaign(slug)
            if campaign is None:
                continue
            for n, units in enumerate(amounts):
                if slug in past:
                    # Pledged while the campaign ran: spread between launch and deadline.
                    launched = campaign.launched_at
                    assert launched is not None
                    span = campaign.deadline - launched
                    clock.freeze(launched + span * (n + 1) / (len(amounts) + 2))
                    declined = n in DECLINED.get(slug, set())
                else:
                    clock.freeze(None)
                    # One card in the live demo saves fine but will be declined when charged.
                    declined = n == 3
                _pledge(campaign, n, units, DECLINED_ON_CHARGE if declined else _card(slug, n))
                made += 1
            db.session.commit()
        steps = sorted(
            _recurring_steps(now) + _steps_of_other_packages(now), key=lambda step: step[0]
        )
        made += sum(len(pledges) for pledges in RECURRING_PLEDGES.values())
        _end_past_campaigns(steps)
        _run_steps_until(steps, now)
        ledger_log.sequence()
    finally:
        clock.freeze(None)
    return made


def _recurring_steps(now: datetime) -> TimedSteps:
    """The weekly strike fund's weeks so far, as timed steps: its standing pledges (three
    in week 1, short of its threshold of four: missed; two more in week 2), each week's
    end, when the sweep decides and charges it, and a batch of strike pay."""
    steps: TimedSteps = []
    for slug, pledges in RECURRING_PLEDGES.items():
        campaign = db_campaign(slug)
        if campaign is None or campaign.launched_at is None:
            continue
        launched = campaign.launched_at
        for n, (units, days) in enumerate(pledges):
            steps.append(
                (
                    launched + timedelta(days=days),
                    partial(
                        _pledge,
                        campaign,
                        n,
                        units,
                        DECLINED_ON_CHARGE if n in RECURRING_DECLINED else _card(slug, n),
                        every_period=True,
                    ),
                )
            )
        week = 1
        while launched + timedelta(weeks=week) < now:
            steps.append(
                (
                    launched + timedelta(weeks=week, minutes=5),
                    partial(advance_recurring, campaign.id),
                )
            )
            week += 1
        if week > 3:
            # Friday of week 3: strike pay to the drivers as one batch, names kept private.
            steps.append((launched + timedelta(weeks=3, days=1), partial(_strike_pay, campaign)))
    return sorted(steps, key=lambda step: step[0])


def _steps_of_other_packages(now: datetime) -> TimedSteps:
    """Timed steps from packages above this one (matching rounds: opened, paid into,
    joined and finalised at their moments), registered as `demo_steps` providers."""
    return [
        step for provider in current_app.extensions.get("demo_steps", []) for step in provider(now)
    ]


def _card(slug: str, n: int) -> str:
    """A different card that the simulated provider charges, per supporter: every
    demo supporter is a distinct backer in a matching round (Visa-like, Luhn-valid)."""
    body = "4242" + f"{zlib.crc32(slug.encode()) % 10**7:07d}{n:04d}"
    digits = [int(d) for d in body]
    total = sum(d if i % 2 else sum(divmod(d * 2, 10)) for i, d in enumerate(reversed(digits)))
    return body + str((10 - total % 10) % 10)


STRIKE_PAY = [("Driver 1", 25), ("Driver 2", 25), ("Driver 3", 20), ("Driver 4", 20)]


def _strike_pay(campaign: Campaign) -> None:
    treasurer, approver = _treasurer_and_approver()
    payees = [(name, Money.from_major(units, campaign.currency)) for name, units in STRIKE_PAY]
    disbursement = disbursements.record(
        campaign,
        treasurer,
        payee="",
        purpose="Strike pay, week 3",
        amount=Money.from_major(sum(units for _, units in STRIKE_PAY), campaign.currency),
        receipt=disbursements.store_receipt(io.BytesIO(_receipt_image())),
        batch=batches.lines_for(payees),
    )
    db.session.commit()
    disbursements.approve(disbursement, approver)


def _treasurer_and_approver() -> tuple[User, User]:
    treasurer, approver = (
        db.session.scalars(select(User).where(User.email == email)).one()
        for email in ("treasurer@example.org", "organizer@example.org")
    )
    return treasurer, approver


def _run_steps_until(steps: TimedSteps, moment: datetime) -> None:
    while steps and steps[0][0] <= moment:
        when, step = steps.pop(0)
        clock.freeze(when)
        step()
        db.session.commit()


def _pledge(campaign: Campaign, n: int, units: int, card: str, every_period=False) -> None:
    visibility, name = SUPPORTERS[n % len(SUPPORTERS)]
    pledge, _ = services.start_pledge(
        campaign,
        amount=Money.from_major(units, campaign.currency),
        submission_key=secrets.token_urlsafe(24),
        guest_email=f"supporter{n}@example.org",
        visibility=visibility,
        public_name=name,
        public_message="Solidarity!" if n % 3 == 0 else "",
        private_message="Thank you for organising this." if n == 1 else "",
        every_period=every_period,
    )
    session = services.start_card_setup(pledge)
    services.card_saved(pledge, enter_simulated_card(session.setup_id, card))


def _end_past_campaigns(recurring: TimedSteps) -> None:
    """Each past campaign's deadline passes in turn, oldest first, and settlement runs as
    it would have then (the weekly fund's steps up to then first, so the ledger is in
    time order); the funded one then refunds a pledge and pays out a disbursement
    approved by a second organizer, a day apart."""
    found = (db_campaign(spec["slug"]) for spec in PAST_CAMPAIGNS)
    for campaign in sorted((c for c in found if c), key=lambda c: c.deadline):
        _run_steps_until(recurring, campaign.deadline + timedelta(minutes=5))
        clock.freeze(campaign.deadline + timedelta(minutes=5))
        run_due_now()
        if campaign.slug == "back-pay-for-the-eastgate-bus-cleaners":
            _refund_and_disburse(campaign)
    ledger_log.sequence()


def _refund_and_disburse(campaign: Campaign) -> None:
    charged = db.session.scalars(
        select(Pledge)
        .where(Pledge.campaign_id == campaign.id, Pledge.status == PledgeStatus.CHARGED)
        .order_by(Pledge.id)
    ).all()
    clock.freeze(campaign.deadline + timedelta(days=1))
    refund(charged[-1], "Refunded at the supporter's request: they had pledged twice")
    treasurer, approver = _treasurer_and_approver()
    clock.freeze(campaign.deadline + timedelta(days=2))
    disbursement = disbursements.record(
        campaign,
        treasurer,
        payee=DISBURSED_TO,
        purpose=DISBURSED_FOR,
        amount=Money(DISBURSED, campaign.currency),
        receipt=disbursements.store_receipt(io.BytesIO(_receipt_image())),
    )
    db.session.commit()
    clock.freeze(campaign.deadline + timedelta(days=2, hours=3))
    disbursements.approve(disbursement, approver)
    db.session.commit()


def _receipt_image() -> bytes:
    """A plain bank-transfer slip for the demo disbursement's public receipt."""
    image = Image.new("RGB", (640, 300), "white")
    draw = ImageDraw.Draw(image)
    lines = [
        "BANK TRANSFER CONFIRMATION (demo)",
        f"To: {DISBURSED_TO}",
        f"Amount: EUR {DISBURSED // 100:,}.00",
        "Reference: Eastgate back-pay advances",
    ]
    for row, text in enumerate(lines):
        draw.text((24, 30 + 50 * row), text, fill="black")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def db_has_pledges() -> bool:
    return db.session.scalar(select(Pledge.id).limit(1)) is not None


def db_campaign(slug: str) -> Campaign | None:
    return db.session.scalar(select(Campaign).where(Campaign.slug == slug))

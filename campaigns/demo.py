"""Demo data for `make run`: a handful of realistic campaigns of every kind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from accounts.models import User
from accounts.passwords import hash_password
from campaigns.models import (
    BudgetLine,
    Campaign,
    CampaignStatus,
    CampaignUpdate,
    Organizer,
    OrganizerRole,
    Source,
)
from campaigns.periods import MAX_PERIODS, Recurrence
from core.clock import utcnow
from core.extensions import db

DEMO_PASSWORD = "night bakers of Riverside"  # noqa: S105 - printed in README for the demo only

PEOPLE = [
    ("organizer@example.org", "Riverside Pickers' Committee"),
    ("treasurer@example.org", "M. Okafor"),
    ("cleaners@example.org", "Cleaners United"),
    ("tenants@example.org", "Northside Tenants"),
    ("council@example.org", "Eastgate Trades Council"),  # runs the demo's matching rounds
]

CAMPAIGNS: list[dict[str, Any]] = [
    {
        "slug": "riverside-warehouse-strike-fund",
        "title": "Strike fund for the Riverside warehouse pickers",
        "summary": "340 pickers walked out over 12-hour shifts. Help them hold the line.",
        "kind": "strike_fund",
        "currency": "EUR",
        "goal": 4_000_000,
        "min_backers": 200,
        "funding_model": "all_or_nothing",
        "days": 21,
        "owner": 0,
        "members": [(1, "treasurer")],
        "story": (
            "## Why we are striking\n\nSince March, management at the Riverside distribution "
            "centre has scheduled **12-hour shifts** with a single 20-minute break. Three "
            "colleagues were hospitalised for heat exhaustion in July.\n\nOn 3 November, 340 "
            "pickers voted to strike until the company agrees to:\n\n1. 8-hour shifts with "
            "paid breaks;\n2. a heat protocol negotiated with the union;\n3. no retaliation "
            "against strikers.\n\n## What the fund pays\n\nStrike pay of 60 € a day for the "
            "lowest-paid pickers, the picket's heating and food, and the union's legal "
            "observer. Every payout is recorded on this campaign's public ledger."
        ),
        "budget": [
            ("Strike pay: 60 € a day for 30 days for the 20 lowest-paid pickers", 3_600_000, True),
            ("Picket heating, food and shelter", 250_000, True),
            ("Legal observer at the picket", 150_000, False),
        ],
        "sources": [
            (
                "Strike vote result, union branch minutes",
                "https://example.org/riverside/strike-vote",
            ),
            (
                "Regional labour inspectorate report on heat exposure",
                "https://example.org/inspectorate/riverside-2026",
            ),
        ],
        "updates": [
            (
                "Day 5: the picket holds",
                "Deliveries are down by half. Thank you to everyone who brought soup.",
            )
        ],
    },
    {
        "slug": "living-wage-for-university-cleaners",
        "title": "A living wage for the City University cleaners",
        "summary": "Outsourced cleaners earn 30% less than in-house staff for the same work.",
        "kind": "wage_struggle",
        "currency": "GBP",
        "goal": 1_500_000,
        "min_backers": None,
        "funding_model": "flexible",
        "days": 45,
        "owner": 2,
        "members": [],
        "story": (
            "The cleaners who keep City University running are employed by a contractor "
            "that pays the legal minimum and no sick pay.\n\nWe are campaigning to be "
            "brought in-house on the same terms as other university staff. The money pays "
            "for materials, interpreters at our meetings (we speak eleven languages) and "
            "a survey of pay across the sector."
        ),
        "budget": [
            ("Interpreters for members' meetings", 600_000, True),
            ("Leaflets, banners and a sound system", 300_000, True),
            ("Pay survey across ten universities", 600_000, False),
        ],
        "sources": [
            (
                "Contractor pay scales (published tender documents)",
                "https://example.org/city-university/tender",
            )
        ],
        "updates": [],
    },
    {
        "slug": "legal-defence-for-the-dismissed-reps",
        "title": "Legal defence for the four dismissed union reps",
        "summary": "Fired a week after asking for a recognition ballot. We take it to tribunal.",
        "kind": "legal_defence",
        "currency": "EUR",
        "goal": 2_500_000,
        "min_backers": 50,
        "funding_model": "all_or_nothing",
        "days": 30,
        "owner": 0,
        "members": [(1, "treasurer")],
        "story": (
            "Four elected workplace representatives were dismissed for 'gross misconduct' "
            "eight days after they requested a union recognition ballot.\n\nOur lawyers "
            "think the case for unfair dismissal is strong. Tribunal costs are not."
        ),
        "budget": [
            ("Solicitor's fees, tribunal stage", 2_000_000, True),
            ("Barrister for the final hearing", 500_000, True),
        ],
        "sources": [
            ("Dismissal letters (redacted)", "https://example.org/reps/letters"),
            (
                "Recognition request sent to management",
                "https://example.org/reps/recognition-request",
            ),
        ],
        "updates": [],
    },
    {
        "slug": "northside-winter-heating-fund",
        "title": "Northside winter heating fund",
        "summary": "Neighbours pooling money so nobody on the estate goes cold this winter.",
        "kind": "mutual_aid",
        "currency": "EUR",
        "goal": 800_000,
        "min_backers": None,
        "funding_model": "flexible",
        "days": 60,
        "owner": 3,
        "members": [],
        "story": (
            "After the landlord's heating system failed for the third winter running, "
            "tenants organised. Until it is fixed, this fund buys heaters and pays the "
            "electricity top-ups of households who ask, no questions asked."
        ),
        "budget": [
            ("Electric heaters for 40 flats", 300_000, True),
            ("Electricity top-ups, December to February", 500_000, True),
        ],
        "sources": [("Tenants' repair log", "https://example.org/northside/repairs")],
        "updates": [
            ("First heaters delivered", "Twelve heaters went out on Saturday."),
            ("Meeting with the landlord", "They promised a date. We will keep going."),
        ],
    },
    {
        "slug": "open-tenant-organising-toolkit",
        "title": "An open-source toolkit for tenant unions",
        "summary": "Free software to track repairs, run ballots and keep members' data safe.",
        "kind": "public_good",
        "currency": "USD",
        "goal": 3_000_000,
        "min_backers": 100,
        "funding_model": "all_or_nothing",
        "days": 40,
        "owner": 3,
        "members": [(0, "organizer")],
        "story": (
            "Tenant unions run on spreadsheets that leak. We will build a small, audited, "
            "self-hostable tool for repair tracking, secret ballots and member lists, "
            "released under the AGPL."
        ),
        "budget": [
            ("Two developers for six months, part-time", 2_400_000, True),
            ("Independent security audit", 600_000, True),
        ],
        "sources": [("Survey of 30 tenant unions' tools", "https://example.org/toolkit/survey")],
        "updates": [],
    },
]


# Campaigns whose deadlines have passed, so a newcomer sees settlement and a populated,
# verifiable ledger on first start. They are created live; payments.demo replays their
# pledges at past moments on a frozen clock and then settles them ("ended": what
# happens at the deadline).
PAST_CAMPAIGNS: list[dict[str, Any]] = [
    {
        "slug": "back-pay-for-the-eastgate-bus-cleaners",
        "title": "Back pay for the Eastgate bus depot cleaners",
        "summary": (
            "Eight cleaners were paid for 6 hours of a 9-hour night. We advance the back pay."
        ),
        "kind": "wage_struggle",
        "currency": "EUR",
        "goal": 60_000,
        "min_backers": 5,
        "funding_model": "all_or_nothing",
        "launched_days_ago": 30,
        "days": 21,
        "ended": "settled",
        "owner": 0,
        "members": [(1, "treasurer")],
        "story": (
            "The contractor at the Eastgate bus depot clocked the night cleaners out at 3 a.m. "
            "while they worked until 6. The claim for the unpaid hours is lodged; this fund "
            "advanced the back pay to the eight cleaners while the claim runs, and the branch "
            "repays the fund when the contractor pays."
        ),
        "budget": [("Back-pay advances to eight cleaners", 60_000, True)],
        "sources": [("Timesheets against depot gate logs", "https://example.org/eastgate/logs")],
        "updates": [
            ("Funded: advances paid", "The advances went out on Friday. Receipt on the ledger.")
        ],
    },
    {
        "slug": "harbour-court-rent-strike-legal-fund",
        "title": "Legal fund for the Harbour Court rent strike",
        "summary": "Tenants withholding rent over mould need a housing lawyer on retainer.",
        "kind": "legal_defence",
        "currency": "EUR",
        "goal": 500_000,
        "min_backers": 40,
        "funding_model": "all_or_nothing",
        "launched_days_ago": 40,
        "days": 30,
        "ended": "released",
        "owner": 3,
        "members": [],
        "story": (
            "This all-or-nothing fund did not reach its goal, so nobody was charged and every "
            "saved card was released. The tenants are trying again with a smaller budget."
        ),
        "budget": [("Housing lawyer on retainer for six months", 500_000, True)],
        "sources": [("Environmental health inspection", "https://example.org/harbour/mould")],
        "updates": [],
    },
    {
        "slug": "hospital-porters-hardship-fund",
        "title": "Hardship fund for the St Aldric's hospital porters",
        "summary": "Porters suspended for refusing unsafe lifts: a fund for their rent.",
        "kind": "mutual_aid",
        "currency": "GBP",
        "goal": 100_000,
        "min_backers": None,
        "funding_model": "flexible",
        "launched_days_ago": 16,
        "days": 14,
        "ended": "retrying",
        "owner": 2,
        "members": [],
        "story": (
            "Four porters were suspended without pay after refusing to move patients "
            "without a hoist. The fund pays their rent while the grievance is heard. Two "
            "backers' cards were declined at the deadline: they have a few days to fix them."
        ),
        "budget": [("Rent for four households, one month", 100_000, True)],
        "sources": [("Manual handling policy", "https://example.org/st-aldrics/policy")],
        "updates": [],
    },
    {
        "slug": "linden-road-school-kitchen-sick-pay",
        "title": "Sick pay for the Linden Road school kitchen staff",
        "summary": "Kitchen staff on zero-hours contracts get no sick pay. A fund covers it.",
        "kind": "mutual_aid",
        "currency": "EUR",
        "goal": 10_000,
        "min_backers": None,
        "funding_model": "all_or_nothing",
        "launched_days_ago": 26,
        "days": 18,
        "ended": "settled",
        "owner": 2,
        "members": [],
        "story": (
            "The school's catering contractor pays nothing for the first week off sick. "
            "Parents and teachers chipped in small amounts so that nobody cooks while ill; "
            "the Trades Council's matching round multiplied them."
        ),
        "budget": [("A week's sick pay, three staff", 10_000, True)],
        "sources": [("The contractor's sickness policy", "https://example.org/linden/policy")],
        "updates": [],
    },
]


# A weekly strike fund (payments.demo replays its first three weeks: one missed, two
# charged), so the recurring API has something to show on a fresh start.
RECURRING_CAMPAIGNS: list[dict[str, Any]] = [
    {
        "slug": "fairfield-bus-drivers-weekly-strike-pay",
        "title": "Weekly strike pay for the Fairfield bus drivers",
        "summary": "Forty drivers on an open-ended strike: strike pay every Friday while it lasts.",
        "kind": "strike_fund",
        "currency": "EUR",
        "goal": 200_000,
        "min_backers": None,
        "funding_model": "flexible",
        "launched_days_ago": 23,
        "days": 84,
        "recurrence": {"interval": "week", "threshold_backers": 4},
        "owner": 0,
        "members": [(1, "treasurer")],
        "story": (
            "The Fairfield depot drivers struck after a third unpaid split shift a week was "
            "added to the rota. Each Friday the fund pays strike pay to the drivers who ask. "
            "A week with fewer than four backers charges nobody; the pledges carry over."
        ),
        "budget": [("Strike pay, paid weekly", 200_000, True)],
        "sources": [("Strike ballot result", "https://example.org/fairfield/ballot")],
        "updates": [],
    },
]


def load_demo(force: bool = False) -> int:
    if not force and db.session.scalar(select(func.count(Campaign.id))):
        return 0
    users = []
    for email, name in PEOPLE:
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(
                email=email,
                display_name=name,
                password_hash=hash_password(DEMO_PASSWORD),
                email_verified_at=utcnow(),
            )
            db.session.add(user)
        users.append(user)
    db.session.flush()
    now = utcnow()
    created = 0
    for spec in CAMPAIGNS + PAST_CAMPAIGNS + RECURRING_CAMPAIGNS:
        if db.session.scalar(select(Campaign.id).where(Campaign.slug == spec["slug"])):
            continue
        launched = now - timedelta(days=spec.get("launched_days_ago", 3))
        deadline = (
            launched + timedelta(days=spec["days"])
            if "launched_days_ago" in spec
            else now + timedelta(days=spec["days"])
        )
        campaign = Campaign(
            slug=spec["slug"],
            title=spec["title"],
            summary=spec["summary"],
            story=spec["story"],
            kind=spec["kind"],
            language="en",
            currency=spec["currency"],
            goal_amount=spec["goal"],
            min_backers=spec["min_backers"],
            funding_model=spec["funding_model"],
            deadline=deadline,
            status=CampaignStatus.LIVE,
            launched_at=launched,
            created_at=launched - timedelta(days=2),
        )
        if "recurrence" in spec:
            campaign.recurrence = Recurrence(
                **spec["recurrence"], ends_at=deadline, max_periods=MAX_PERIODS
            )
        campaign.organizers = [Organizer(user_id=users[spec["owner"]].id, role=OrganizerRole.OWNER)]
        campaign.organizers += [
            Organizer(user_id=users[i].id, role=role) for i, role in spec["members"]
        ]
        campaign.budget_lines = [
            BudgetLine(position=i, label=label, amount=amount, required=req)
            for i, (label, amount, req) in enumerate(spec["budget"])
        ]
        campaign.sources = [
            Source(position=i, title=t, url=u) for i, (t, u) in enumerate(spec["sources"])
        ]
        for age, (title, body) in enumerate(spec["updates"]):
            campaign.updates.append(
                CampaignUpdate(
                    title=title,
                    body=body,
                    author_id=users[spec["owner"]].id,
                    created_at=now - timedelta(hours=6 + 30 * age),
                )
            )
        db.session.add(campaign)
        created += 1
    db.session.flush()
    return created

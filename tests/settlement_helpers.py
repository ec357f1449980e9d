from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, select

from accounts.models import User
from campaigns.models import BudgetLine, Campaign, Organizer
from core import clock
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from core.urls import public_request_context
from ledger.models import LedgerPosting, LedgerTransaction
from payments import services
from payments.backends import get_backend
from payments.models import Pledge

GOOD = "4242424242424242"
DECLINE_ON_CHARGE = "4000000000000341"
NEEDS_AUTH = "4000002760003184"
NO_FUNDS = "4000000000009995"


def make_campaign(app, *, goal=100, min_backers=None, model="all_or_nothing", days=10) -> int:
    with app.app_context():
        user = User(
            email=f"{secrets.token_hex(4)}@example.org", display_name="Org", password_hash="x"
        )
        db.session.add(user)
        db.session.flush()
        campaign = Campaign(
            slug="c-" + secrets.token_hex(4),
            title="A campaign",
            summary="s",
            story="s",
            kind="strike_fund",
            currency="EUR",
            goal_amount=goal * 100,
            min_backers=min_backers,
            funding_model=model,
            deadline=utcnow() + timedelta(days=days),
            status="live",
            launched_at=utcnow(),
        )
        campaign.organizers = [Organizer(user_id=user.id, role="owner")]
        campaign.budget_lines = [
            BudgetLine(position=0, label="x", amount=goal * 100, required=True)
        ]
        db.session.add(campaign)
        db.session.commit()
        return campaign.id


def add_pledges(app, campaign_id, cards_and_amounts) -> list[int]:
    """Real pledges through the simulated provider; amounts in whole euros."""
    ids = []
    with app.app_context(), public_request_context():
        campaign = db.session.get(Campaign, campaign_id)
        for n, (card, units) in enumerate(cards_and_amounts):
            pledge, _ = services.start_pledge(
                campaign,
                amount=Money.from_major(units, "EUR"),
                submission_key=secrets.token_urlsafe(20),
                guest_email=f"supporter{n}@example.org",
            )
            session = services.start_card_setup(pledge)
            saved = get_backend().provider.confirm_setup(session.setup_id, card)
            services.card_saved(pledge, saved)
            db.session.commit()
            ids.append(pledge.id)
    return ids


def past_deadline(app, campaign_id, extra=timedelta(minutes=1)) -> None:
    with app.app_context():
        deadline = db.session.get(Campaign, campaign_id).deadline
    clock.freeze(deadline + extra)


def run_sweep(app) -> None:
    from payments.jobs import sweep

    with app.app_context(), public_request_context():
        sweep()


def campaign(app, campaign_id) -> Campaign:
    with app.app_context():
        return db.session.get(Campaign, campaign_id)


def pledge_states(app, campaign_id) -> dict[int, str]:
    with app.app_context():
        return dict(
            db.session.execute(
                select(Pledge.id, Pledge.status).where(Pledge.campaign_id == campaign_id)
            ).all()
        )


def provider_charges(app, pledge_ids) -> dict[int, int]:
    """How many successful charges the provider holds per pledge."""
    provider = app.extensions["payment_backend"].provider
    with app.app_context():
        refs = dict(
            db.session.execute(
                select(Pledge.id, Pledge.public_id).where(Pledge.id.in_(pledge_ids))
            ).all()
        )
    return {pid: len(provider.charges_for(ref)) for pid, ref in refs.items()}


def ledger_balance(app, account) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.coalesce(func.sum(LedgerPosting.amount), 0)).where(
                LedgerPosting.account == account
            )
        )


def ledger_count(app, kind=None) -> int:
    with app.app_context():
        query = select(func.count(LedgerTransaction.id))
        if kind:
            query = query.where(LedgerTransaction.kind == kind)
        return db.session.scalar(query)

"""Campaign totals always equal the sum of the active pledges behind them."""

from __future__ import annotations

import secrets
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from accounts.models import User
from campaigns.models import BudgetLine, Campaign, Organizer
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from core.urls import public_request_context
from payments import services
from payments.backends import get_backend
from payments.models import Pledge, PledgeStatus

operations = st.lists(
    st.one_of(
        st.tuples(st.just("pledge"), st.integers(min_value=1, max_value=5000)),
        st.tuples(
            st.just("change"),
            st.integers(min_value=0, max_value=20),
            st.integers(min_value=1, max_value=5000),
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=20)),
    ),
    max_size=25,
)


def _campaign() -> Campaign:
    user = User(email=f"{secrets.token_hex(4)}@example.org", display_name="O", password_hash="x")
    db.session.add(user)
    db.session.flush()
    campaign = Campaign(
        slug=secrets.token_hex(6),
        title="T",
        summary="S",
        story="s",
        kind="mutual_aid",
        currency="EUR",
        goal_amount=100_000,
        funding_model="flexible",
        deadline=utcnow() + timedelta(days=10),
        status="live",
        launched_at=utcnow(),
    )
    campaign.organizers = [Organizer(user_id=user.id, role="owner")]
    campaign.budget_lines = [BudgetLine(position=0, label="x", amount=100_000, required=True)]
    db.session.add(campaign)
    db.session.flush()
    return campaign


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_totals_equal_active_pledges(app, ops):
    with app.app_context(), public_request_context():
        campaign = _campaign()
        made: list[Pledge] = []
        for op in ops:
            try:
                if op[0] == "pledge":
                    pledge, _ = services.start_pledge(
                        campaign,
                        amount=Money.from_major(op[1], "EUR"),
                        submission_key=secrets.token_urlsafe(20),
                        guest_email="s@example.org",
                    )
                    session = services.start_card_setup(pledge)
                    saved = get_backend().provider.confirm_setup(
                        session.setup_id, "4242424242424242"
                    )
                    services.card_saved(pledge, saved)
                    made.append(pledge)
                elif made and op[0] == "change":
                    services.change_amount(made[op[1] % len(made)], Money.from_major(op[2], "EUR"))
                elif made and op[0] == "cancel":
                    services.cancel(made[op[1] % len(made)])
            except services.PledgeError:
                pass
            db.session.commit()
        count, total = db.session.execute(
            select(func.count(Pledge.id), func.coalesce(func.sum(Pledge.amount), 0)).where(
                Pledge.campaign_id == campaign.id, Pledge.status == PledgeStatus.ACTIVE
            )
        ).one()
        db.session.refresh(campaign)
        assert (campaign.pledged_amount, campaign.backer_count) == (total, count)

"""The pledge state machine: the transition table is the whole truth about how a
pledge's status can change, and payments.lifecycle is its only writer."""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import pytest
from sqlalchemy import select, update

from campaigns.models import CAMPAIGN_MACHINE, Campaign, CampaignStatus
from core.extensions import db
from ledger.disbursements import DISBURSEMENT_MACHINE, DisbursementStatus
from payments import lifecycle
from payments.models import Pledge, PledgeEvent, PledgeStatus
from rounds.models import ENTRY_MACHINE, ROUND_MACHINE
from tests.factories import live_campaign, pledge

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = (
    "app.py",
    "core",
    "accounts",
    "campaigns",
    "payments",
    "ledger",
    "rounds",
    "integrations",
)


def _put(pledge_id: int, status: PledgeStatus) -> None:
    """Test setup only: place the pledge in a state without the machine."""
    db.session.execute(update(Pledge).where(Pledge.id == pledge_id).values(status=status))
    db.session.commit()


def test_every_state_and_event_pair_moves_exactly_as_the_table_says(app):
    slug = live_campaign(app)
    assert pledge(app.test_client(), slug).status_code == 302
    with app.app_context():
        pledge_id = db.session.scalar(select(Pledge.id))
        tried = 0
        for state, transition in product(PledgeStatus, lifecycle.TRANSITIONS):
            _put(pledge_id, state)
            events_before = db.session.scalar(
                select(db.func.count(PledgeEvent.id)).where(PledgeEvent.pledge_id == pledge_id)
            )
            moved = lifecycle.move(transition.event, pledge_id)
            db.session.commit()
            now = db.session.scalar(select(Pledge.status).where(Pledge.id == pledge_id))
            events = db.session.scalars(
                select(PledgeEvent)
                .where(PledgeEvent.pledge_id == pledge_id)
                .order_by(PledgeEvent.id)
                .offset(events_before)
            ).all()
            if state in transition.sources:
                assert lifecycle.allowed(state, transition.target)
                assert [r.id for r in moved] == [pledge_id]
                assert now == transition.target
                assert [(e.kind, e.from_status, e.to_status) for e in events] == [
                    (transition.event, state.value, transition.target.value)
                ]
            else:
                assert moved == [], (state, transition.event)
                assert now == state, (state, transition.event)
                assert events == []
            tried += 1
        assert tried == len(PledgeStatus) * len(lifecycle.TRANSITIONS)


def test_a_move_honours_its_guard_and_keeps_the_loaded_pledge_in_step(app):
    """Settlement records a charge only under the claim's own key: a stale claim (an
    earlier attempt's key) moves nothing. A pledge moved through move_pledge says so
    at once, without being read again."""
    slug = live_campaign(app)
    assert pledge(app.test_client(), slug).status_code == 302
    with app.app_context():
        pledge_id = db.session.scalar(select(Pledge.id))
        db.session.execute(
            update(Pledge)
            .where(Pledge.id == pledge_id)
            .values(status=PledgeStatus.CHARGING, charge_key=f"pledge-{pledge_id}-attempt-2")
        )
        db.session.commit()
        loaded = db.session.get(Pledge, pledge_id)
        stale = (Pledge.charge_key == f"pledge-{pledge_id}-attempt-1",)
        assert lifecycle.move_pledge(loaded, "charge_charged", guard=stale) is None
        db.session.commit()
        assert db.session.scalar(select(Pledge.status).where(Pledge.id == pledge_id)) == "charging"
        current = (Pledge.charge_key == f"pledge-{pledge_id}-attempt-2",)
        assert lifecycle.move_pledge(loaded, "charge_charged", guard=current) == "charging"
        assert loaded.status == PledgeStatus.CHARGED  # in step, before any refresh
        db.session.commit()
        assert db.session.scalar(select(Pledge.status).where(Pledge.id == pledge_id)) == "charged"


def test_pairs_outside_the_table_are_not_allowed():
    for source, target in product(PledgeStatus, PledgeStatus):
        reachable = any(source in t.sources and t.target == target for t in lifecycle.TRANSITIONS)
        assert lifecycle.allowed(source, target) == reachable
    # Final states stay final.
    for final in (PledgeStatus.REFUNDED,):
        assert not any(lifecycle.allowed(final, t) for t in PledgeStatus)
    assert not lifecycle.allowed(PledgeStatus.CHARGED, PledgeStatus.CANCELLED)
    assert not lifecycle.allowed(PledgeStatus.CHARGING, PledgeStatus.CANCELLED)


def test_every_state_is_reachable_and_every_event_name_is_unique():
    reached = {lifecycle.INITIAL} | {t.target for t in lifecycle.TRANSITIONS}
    assert reached == set(PledgeStatus)
    names = [t.event for t in lifecycle.TRANSITIONS]
    assert len(names) == len(set(names))
    assert not set(names) & lifecycle.NOTES


def test_a_note_is_not_a_way_around_the_table(app):
    with app.app_context(), pytest.raises(ValueError, match="use move"):
        lifecycle.note(1, "charge_charged")


def test_a_bulk_move_that_finds_some_pledges_moved_writes_nothing(app):
    slug = live_campaign(app)
    client = app.test_client()
    for n in range(2):
        assert pledge(client, slug, email=f"s{n}@example.org").status_code == 302
    with app.app_context():
        first, second = db.session.scalars(select(Pledge.id).order_by(Pledge.id)).all()
        _put(first, PledgeStatus.CHARGING)
        _put(second, PledgeStatus.CHARGED)  # recorded meanwhile
        with pytest.raises(lifecycle.PartialMove):
            lifecycle.move_each("charge_charged", [{"pid": first}, {"pid": second}], values={})
        db.session.rollback()
        assert db.session.scalar(select(Pledge.status).where(Pledge.id == first)) == "charging"


# What writing a pledge's status looks like in SQLAlchemy or on an object.
STATUS_WRITE = re.compile(
    r"status\s*=\s*(PledgeStatus\.|S\.|to\b|\"(pending|active|cancelled|charging|charged|"
    r"failed|needs_authentication|dropped|released|refunded|paused|disputed)\")"
    r"|\"status\"\s*:\s*PledgeStatus|pledge\.status\s*=[^=]|\.status\s*=\s*INITIAL"
)


def test_only_the_lifecycle_module_writes_a_pledge_status():
    writers = set()
    for top in APPLICATION:
        for path in [ROOT / top] if top.endswith(".py") else (ROOT / top).rglob("*.py"):
            if "backends" in path.parts:
                continue  # the provider's own objects (SetupIntents, charges), not pledges
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if STATUS_WRITE.search(line) and "==" not in line:
                    writers.add(f"{path.relative_to(ROOT)}:{number}")
    assert writers and all(w.startswith("payments/lifecycle.py:") for w in writers), writers


@pytest.mark.parametrize(
    "machine",
    [lifecycle.MACHINE, CAMPAIGN_MACHINE, DISBURSEMENT_MACHINE, ROUND_MACHINE, ENTRY_MACHINE],
)
def test_each_documented_diagram_is_its_table(machine):
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert f"```mermaid\n{machine.diagram()}\n```" in doc


def test_a_campaign_moves_only_along_its_table():
    tried = refused = 0
    for source, target in product(CampaignStatus, CampaignStatus):
        if source == target:
            continue
        campaign = Campaign(status=source)
        tried += 1
        if CAMPAIGN_MACHINE.allowed(source, target):
            campaign.status = target
            assert campaign.status == target
        else:
            refused += 1
            with pytest.raises(ValueError, match="cannot go from"):
                campaign.status = target
            assert campaign.status == source
    assert tried == len(CampaignStatus) * (len(CampaignStatus) - 1)
    assert 0 < refused < tried
    # The ones that matter most: nothing settled or released comes back to life.
    for final in (CampaignStatus.SETTLED, CampaignStatus.RELEASED, CampaignStatus.CANCELLED):
        assert not CAMPAIGN_MACHINE.allowed(final, CampaignStatus.LIVE)


def test_a_disbursement_is_decided_once():
    assert DISBURSEMENT_MACHINE.allowed(DisbursementStatus.PENDING, DisbursementStatus.APPROVED)
    assert DISBURSEMENT_MACHINE.allowed(DisbursementStatus.PENDING, DisbursementStatus.REJECTED)
    for decided in (DisbursementStatus.APPROVED, DisbursementStatus.REJECTED):
        assert not any(DISBURSEMENT_MACHINE.allowed(decided, t) for t in DisbursementStatus)


def test_every_event_of_a_pledge_has_words_for_its_supporter():
    from payments.models import EVENT_LABELS

    kinds = {t.event for t in lifecycle.TRANSITIONS} | lifecycle.NOTES
    assert kinds <= set(EVENT_LABELS), kinds - set(EVENT_LABELS)

"""The pledge state machine: the transition table is the whole truth about how a
pledge's status can change, and payments.lifecycle is its only writer."""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from itertools import product
from pathlib import Path

import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from campaigns.models import CAMPAIGN_MACHINE, Campaign, CampaignStatus
from core.clock import utcnow
from core.extensions import db
from core.states import StateMachine, Transition
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


# ---- Each argument of the writers does what it says (mutation testing found these
# unchecked: the state tests above would pass with an amount or a limit ignored). ----

S = PledgeStatus


def _pledges(app, count: int) -> list[int]:
    """`count` active pledges of 10, 11, 12 … euros to one campaign, oldest first."""
    slug = live_campaign(app)
    client = app.test_client()
    for n in range(count):
        response = pledge(client, slug, amount=str(10 + n), email=f"s{n}@example.org")
        assert response.status_code == 302
    with app.app_context():
        return list(db.session.scalars(select(Pledge.id).order_by(Pledge.id)))


def _last_event_id() -> int:
    return db.session.scalar(select(func.coalesce(func.max(PledgeEvent.id), 0)))


def _events_after(event_id: int) -> list[tuple]:
    return [
        (e.pledge_id, e.kind, e.from_status, e.to_status, e.amount, e.detail)
        for e in db.session.scalars(
            select(PledgeEvent).where(PledgeEvent.id > event_id).order_by(PledgeEvent.id)
        )
    ]


def _statuses(ids: list[int]) -> list[str]:
    rows = db.session.execute(select(Pledge.id, Pledge.status).where(Pledge.id.in_(ids)))
    by_id = {row.id: row.status for row in rows}
    return [by_id[i] for i in ids]


def test_a_move_of_listed_pledges_stops_at_its_limit_and_records_what_it_is_told(app):
    p1, p2, p3, p4 = _pledges(app, 4)
    with app.app_context():
        _put(p2, S.FAILED)
        _put(p4, S.CHARGED)
        before = _last_event_id()
        moved = lifecycle.move(
            "charge_claimed",
            [p1, p2, p3, p4],
            values={"charge_key": "claim-1", "charge_attempts": Pledge.charge_attempts + 1},
            returning=(Pledge.charge_key, Pledge.amount, Pledge.charge_attempts),
            limit=2,
            amount=lambda row: row.amount * 2,
            detail=lambda row: f"{row.charge_key}/{row.charge_attempts}",
        )
        db.session.commit()
        # Sources are taken in the table's order (active, then failed): the two active
        # pledges reach the limit, so the failed one is left for the next claim.
        assert [(r.id, r.status, r.amount, r.charge_key) for r in moved] == [
            (p1, "charging", 1000, "claim-1"),
            (p3, "charging", 1200, "claim-1"),
        ]
        assert _statuses([p1, p2, p3, p4]) == ["charging", "failed", "charging", "charged"]
        assert _events_after(before) == [
            (p1, "charge_claimed", "active", "charging", 2000, "claim-1/1"),
            (p3, "charge_claimed", "active", "charging", 2400, "claim-1/1"),
        ]
        before = _last_event_id()
        rest = lifecycle.move("charge_claimed", [p2, p4], detail="second round")
        db.session.commit()
        assert [(r.id, r.status, r.amount) for r in rest] == [(p2, "charging", 1100)]
        assert _events_after(before) == [
            (p2, "charge_claimed", "failed", "charging", 1100, "second round")
        ]


def test_a_move_chosen_by_query_asks_each_source_for_what_is_still_wanted(app):
    p1, p2, p3, p4 = _pledges(app, 4)
    with app.app_context():
        _put(p2, S.FAILED)
        _put(p4, S.FAILED)
        asked = []

        def oldest(source, wanted):
            asked.append((source, wanted))
            return (
                select(Pledge.id).where(Pledge.status == source).order_by(Pledge.id).limit(wanted)
            )

        moved = lifecycle.move("charge_claimed", oldest, limit=3)
        db.session.commit()
        assert asked == [(S.ACTIVE, 3), (S.FAILED, 1)]
        assert [r.id for r in moved] == [p1, p3, p2]
        assert _statuses([p1, p2, p3, p4]) == ["charging", "charging", "charging", "failed"]
        asked.clear()
        before = _last_event_id()
        assert [r.id for r in lifecycle.move("charge_claimed", oldest)] == [p4]
        assert asked == [(S.ACTIVE, None), (S.FAILED, None)]
        assert _events_after(before) == [(p4, "charge_claimed", "failed", "charging", 1300, "")]


def test_moving_one_loaded_pledge_writes_its_values_and_event_and_keeps_it_in_step(app):
    (pledge_id,) = _pledges(app, 1)
    with app.app_context():
        loaded = db.session.get(Pledge, pledge_id)
        attempts = loaded.charge_attempts
        before = _last_event_id()
        left = lifecycle.move_pledge(
            loaded,
            "charge_claimed",
            values={"charge_key": "claim-7", "charge_attempts": Pledge.charge_attempts + 1},
            amount=777,
            detail="on session",
        )
        assert left == S.ACTIVE
        # In step without a refresh: the object's attributes were set from the row.
        assert (loaded.status, loaded.charge_key, loaded.charge_attempts) == (
            S.CHARGING,
            "claim-7",
            attempts + 1,
        )
        db.session.commit()
        assert _events_after(before) == [
            (pledge_id, "charge_claimed", "active", "charging", 777, "on session")
        ]
        stored = db.session.execute(
            select(Pledge.charge_key, Pledge.charge_attempts).where(Pledge.id == pledge_id)
        ).one()
        assert tuple(stored) == ("claim-7", attempts + 1)
        # Without an amount, the event carries the pledge's.
        before = _last_event_id()
        assert lifecycle.move_pledge(loaded, "charge_charged") == S.CHARGING
        db.session.commit()
        assert _events_after(before) == [
            (pledge_id, "charge_charged", "charging", "charged", 1000, "")
        ]
        with pytest.raises(lifecycle.StaleState, match=f"pledge {pledge_id} is no longer charged"):
            lifecycle.move_or_raise(loaded, "activated")
        assert _events_after(before)[1:] == []
        lifecycle.move_or_raise(loaded, "refunded", values={"failure_code": "by request"})
        db.session.commit()
        assert db.session.scalar(select(Pledge.failure_code).where(Pledge.id == pledge_id)) == (
            "by request"
        )


def test_a_bulk_move_with_values_of_its_own_moves_all_and_records_each(app):
    p1, p2, p3 = _pledges(app, 3)
    with app.app_context():
        for pid in (p1, p2, p3):
            _put(pid, S.CHARGING)
        before = _last_event_id()
        lifecycle.move_each(
            "charge_charged",
            [
                {"pid": p1, "charge": "ch_1", "got": 1000},
                {"pid": p2, "charge": "ch_2", "got": 990},
            ],
            values={"provider_charge_id": bindparam("charge"), "charged_amount": bindparam("got")},
            amount=lambda p: p["got"],
            detail=lambda p: p["charge"],
        )
        db.session.commit()
        assert _statuses([p1, p2, p3]) == ["charged", "charged", "charging"]
        charges = db.session.execute(
            select(Pledge.provider_charge_id, Pledge.charged_amount)
            .where(Pledge.id.in_([p1, p2]))
            .order_by(Pledge.id)
        ).all()
        assert [tuple(c) for c in charges] == [("ch_1", 1000), ("ch_2", 990)]
        assert _events_after(before) == [
            (p1, "charge_charged", "charging", "charged", 1000, "ch_1"),
            (p2, "charge_charged", "charging", "charged", 990, "ch_2"),
        ]
        # Without amount and detail functions the events carry none.
        before = _last_event_id()
        lifecycle.move_each("charge_failed", [{"pid": p3}])
        db.session.commit()
        assert _events_after(before) == [(p3, "charge_failed", "charging", "failed", None, "")]
        # A guard that a pledge does not meet makes the whole batch refuse.
        _put(p3, S.CHARGING)
        with pytest.raises(lifecycle.PartialMove, match="0 of 1 pledges moved"):
            lifecycle.move_each(
                "charge_charged", [{"pid": p3}], guard=(Pledge.__table__.c.amount > 5000,)
            )
        db.session.rollback()
        assert _statuses([p3]) == ["charging"]


def test_period_charges_open_active_once_per_period_with_their_events(app):
    (parent,) = _pledges(app, 1)
    with app.app_context():
        assert lifecycle.begin_period_charges([]) == []
        source = db.session.get(Pledge, parent)
        copied = {
            name: getattr(source, name)
            for name in ("campaign_id", "guest_email", "amount", "currency", "backend")
        }
        now = utcnow()
        rows = [
            {
                **copied,
                "amount": amount,
                "public_id": f"period-charge-{period}",
                "submission_key": f"period-{period}-of-{parent}",
                "parent_id": parent,
                "period": period,
                "activated_at": now,
                "retry_until": now + timedelta(days=3),
                "created_at": now,
            }
            for period, amount in ((2, 500), (1, 700))
        ]
        before = _last_event_id()
        opened = lifecycle.begin_period_charges(rows)
        db.session.commit()
        keyed = db.session.execute(
            select(Pledge.submission_key, Pledge.id).where(Pledge.id.in_(opened))
        )
        by_key = {row.submission_key: row.id for row in keyed}
        second, first = by_key[f"period-2-of-{parent}"], by_key[f"period-1-of-{parent}"]
        assert sorted(opened) == sorted([second, first])
        assert _statuses(opened) == ["active", "active"]
        assert sorted(_events_after(before)) == sorted(
            [
                (second, "period_charge_opened", None, "active", 500, ""),
                (first, "period_charge_opened", None, "active", 700, ""),
            ]
        )
        again = [{**rows[1], "public_id": "again", "submission_key": "again"}]
        with pytest.raises(IntegrityError):
            lifecycle.begin_period_charges(again)
        db.session.rollback()


def test_a_pledge_begins_pending_and_notes_change_no_state(app):
    p1, p2 = _pledges(app, 2)
    with app.app_context():
        created = db.session.execute(
            select(PledgeEvent.kind, PledgeEvent.from_status, PledgeEvent.to_status)
            .add_columns(PledgeEvent.amount, PledgeEvent.detail)
            .where(PledgeEvent.pledge_id == p2)
            .order_by(PledgeEvent.id)
        ).first()
        assert tuple(created) == ("created", None, "pending", 1100, "")
        before = _last_event_id()
        lifecycle.note(p1, "reminder_sent")
        lifecycle.note([p1, p2], "amount_changed", amount=1500, detail="from 10 to 15")
        db.session.commit()
        assert _events_after(before) == [
            (p1, "reminder_sent", None, None, None, ""),
            (p1, "amount_changed", None, None, 1500, "from 10 to 15"),
            (p2, "amount_changed", None, None, 1500, "from 10 to 15"),
        ]
        assert _statuses([p1, p2]) == ["active", "active"]


class _Door(enum.StrEnum):
    OPEN = "open"
    AJAR = "ajar"
    SHUT = "shut"


def test_a_state_machine_lists_each_source_once_in_table_order_and_refuses_twin_events():
    machine = StateMachine(
        "door",
        [_Door.OPEN],
        [
            Transition("push", (_Door.AJAR, _Door.OPEN), _Door.SHUT),
            Transition("slam", (_Door.OPEN,), _Door.SHUT),
            Transition("nudge", (_Door.SHUT,), _Door.AJAR),
        ],
    )
    assert (machine.name, machine.initial) == ("door", (_Door.OPEN,))
    assert machine.sources_of(_Door.SHUT) == (_Door.AJAR, _Door.OPEN)
    assert machine.sources_of(_Door.OPEN) == ()
    assert machine.by_event["slam"].sources == (_Door.OPEN,)
    assert machine.pairs == {("ajar", "shut"), ("open", "shut"), ("shut", "ajar")}
    assert machine.allowed("open", "shut") and not machine.allowed("shut", "open")
    assert machine.diagram().splitlines() == [
        "stateDiagram-v2",
        "    [*] --> open",
        "    ajar --> shut: push",
        "    open --> shut: push",
        "    open --> shut: slam",
        "    shut --> ajar: nudge",
    ]
    with pytest.raises(ValueError, match=r"^door: two transitions share an event name$"):
        StateMachine("door", [], [Transition("push", (_Door.OPEN,), _Door.SHUT)] * 2)


def test_a_pledge_or_event_made_outside_the_lifecycle_is_refused(app):
    """Neither has a state or words of its own to fall back on: a pledge begins only
    through lifecycle.begin, an event only through the lifecycle's writers."""
    (existing,) = _pledges(app, 1)
    with app.app_context():
        source = db.session.get_one(Pledge, existing)
        orphan = Pledge(
            public_id="orphan",
            submission_key="orphan",
            campaign_id=source.campaign_id,
            guest_email="orphan@example.org",
            amount=500,
            currency="EUR",
            backend=source.backend,
        )
        db.session.add(orphan)
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()
        db.session.add(PledgeEvent(pledge_id=existing, kind="reminder_sent"))
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()
        assert db.session.scalar(select(func.count(Pledge.id))) == 1

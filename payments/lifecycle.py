"""The pledge state machine: the only code that writes a pledge's status.

`TRANSITIONS` lists every move a pledge can make, each under the name of the event it
writes. `move()` performs one: a guarded `UPDATE … WHERE status = <source>` for one
pledge or many (one statement per source state, so each event knows where its pledge
came from), inserting the moved pledges' events in bulk in the same transaction, and
returns what moved. A pledge that is no longer in a source state is simply not moved:
a replay, a stale page or a second worker changes nothing.

Events that record something without a change of state (an amount changed, a
reminder sent) go through `note()`. The diagram in docs/architecture.md is generated
from this table (`python -m payments.lifecycle`) and a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, Select, Table, bindparam, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement

from core.extensions import db
from core.states import StateMachine, Transition
from payments.models import Pledge, PledgeEvent, PledgeStatus

S = PledgeStatus


# Money that moved is followed wherever the pledge went meanwhile (see
# settlement.recording.follow_lost_charge): every state a charge can come back to.
_LATE_CHARGE_SOURCES = (
    S.PENDING,
    S.ACTIVE,
    S.CANCELLED,
    S.FAILED,
    S.NEEDS_AUTHENTICATION,
    S.DROPPED,
    S.RELEASED,
)

TRANSITIONS: tuple[Transition[PledgeStatus], ...] = (
    Transition("activated", (S.PENDING,), S.ACTIVE, "card saved"),
    Transition("cancelled", (S.PENDING, S.ACTIVE, S.PAUSED), S.CANCELLED, "the supporter cancels"),
    Transition("abandoned", (S.PENDING,), S.CANCELLED, "card form left unfinished"),
    Transition("cancelled_unfinished", (S.PENDING,), S.CANCELLED, "campaign ends before the card"),
    Transition(
        "released", (S.ACTIVE, S.PAUSED), S.RELEASED, "campaign unfunded, cancelled or over"
    ),
    Transition("paused", (S.ACTIVE,), S.PAUSED, "the supporter pauses a standing pledge"),
    Transition("resumed", (S.PAUSED,), S.ACTIVE, "the supporter resumes it"),
    Transition("charge_claimed", (S.ACTIVE, S.FAILED), S.CHARGING, "settlement claims"),
    Transition(
        "charge_claimed_on_session",
        (S.NEEDS_AUTHENTICATION,),
        S.CHARGING,
        "the supporter authenticates",
    ),
    Transition("charge_charged", (S.CHARGING,), S.CHARGED, "provider charged"),
    Transition("charge_failed", (S.CHARGING,), S.FAILED, "card declined"),
    Transition(
        "charge_needs_authentication",
        (S.CHARGING,),
        S.NEEDS_AUTHENTICATION,
        "issuer wants the supporter",
    ),
    Transition("charge_dropped", (S.CHARGING,), S.DROPPED, "declined after the window"),
    Transition(
        "charge_authenticated",
        (S.NEEDS_AUTHENTICATION,),
        S.CHARGED,
        "the supporter's bank confirms (3-D Secure)",
    ),
    Transition("dropped", (S.NEEDS_AUTHENTICATION,), S.DROPPED, "window over"),
    Transition("card_replaced_for_retry", (S.NEEDS_AUTHENTICATION,), S.FAILED, "new card: retry"),
    Transition("charge_recorded_late", _LATE_CHARGE_SOURCES, S.CHARGED, "a lost charge found"),
    Transition("refunded", (S.CHARGED,), S.REFUNDED, "refund"),
    Transition("charged_back", (S.CHARGED,), S.DISPUTED, "the cardholder's bank takes it back"),
    Transition("charge_reinstated", (S.DISPUTED,), S.CHARGED, "the bank gives it back"),
)

INITIAL = S.PENDING
# A period's charge of a standing pledge starts active: the card is the standing pledge's.
PERIOD_CHARGE_INITIAL = S.ACTIVE
MACHINE = StateMachine("pledge", [INITIAL, PERIOD_CHARGE_INITIAL], TRANSITIONS)
BY_EVENT: dict[str, Transition[PledgeStatus]] = MACHINE.by_event

# Events that change no state.
NOTES = frozenset(
    {
        "created",
        "period_charge_opened",
        "card_not_saved",
        "card_replaced",
        "amount_changed",
        "reminder_sent",
        # The supporter's bank did not confirm a payment that waited for them (they
        # failed or left 3-D Secure): the pledge still waits; they can try again.
        "authentication_failed",
        # Money returned at the processor, not by us: the pledge stays charged until
        # all of it is returned (then it moves to refunded).
        "refunded_elsewhere",
        # A supporter's bank disputes the charge: opened, money taken or given back,
        # closed (won or lost). The ledger shows the money; these say what happened.
        # Money taken or given back moves the pledge (charged_back, charge_reinstated)
        # when it is charged or disputed; these notes record it in any other state.
        "dispute_opened",
        "dispute_funds_withdrawn",
        "dispute_funds_reinstated",
        "dispute_closed",
    }
)


class StaleState(RuntimeError):
    """The pledge was no longer in a state the transition starts from (a replay)."""


class PartialMove(RuntimeError):
    """A bulk move found some pledges moved meanwhile: the caller rolls back."""


def allowed(source: PledgeStatus | str, target: PledgeStatus | str) -> bool:
    return MACHINE.allowed(source, target)


Candidates = int | Sequence[int] | Callable[[PledgeStatus, int | None], Select[Any]]
PerRow = Callable[[Row[Any]], Any]


def move(
    event: str,
    candidates: Candidates,
    *,
    guard: Iterable[ColumnElement[bool]] = (),
    values: Mapping[str, Any] | None = None,
    returning: Iterable[Any] = (),
    limit: int | None = None,
    amount: PerRow | None = None,
    detail: str | PerRow = "",
) -> list[Row[Any]]:
    """Move the candidate pledges that are in one of the event's source states (and
    match `guard`) to its target, setting `values` too; insert their events. Returns
    the moved rows (`id`, `amount`, `status` and the `returning` columns).

    `candidates` is a pledge id, a list of ids, or a function building, for one source
    state and the number still wanted, a SELECT of ids (it may lock rows: FOR UPDATE
    SKIP LOCKED). With `limit`, at most that many move in all.
    """
    return [
        row
        for _source, row in _move(
            event,
            candidates,
            guard=guard,
            values=values,
            returning=returning,
            limit=limit,
            amount=amount,
            detail=detail,
        )
    ]


def _move(
    event: str,
    candidates: Candidates,
    *,
    guard: Iterable[ColumnElement[bool]],
    values: Mapping[str, Any] | None,
    returning: Iterable[Any],
    limit: int | None,
    amount: PerRow | None,
    detail: str | PerRow,
) -> list[tuple[PledgeStatus, Row[Any]]]:
    transition = BY_EVENT[event]
    guard = tuple(guard)
    base = (Pledge.id, Pledge.amount, Pledge.status)
    columns = (*base, *(c for c in returning if c.key not in {b.key for b in base}))
    moved: list[tuple[PledgeStatus, Row[Any]]] = []
    for source in transition.sources:
        wanted = None if limit is None else limit - len(moved)
        if wanted is not None and wanted <= 0:
            break
        chosen: ColumnElement[bool]
        if callable(candidates):
            chosen = Pledge.id.in_(candidates(source, wanted).scalar_subquery())
        elif isinstance(candidates, int):
            chosen = Pledge.id == candidates
        else:
            chosen = Pledge.id.in_(candidates)
        rows = db.session.execute(
            update(Pledge)
            .where(chosen, Pledge.status == source, *guard)
            .values(status=transition.target, **(values or {}))
            .returning(*columns)
            .execution_options(synchronize_session=False)
        ).all()
        _insert_events(
            [
                _event_row(
                    event,
                    row.id,
                    source,
                    transition.target,
                    amount(row) if amount else row.amount,
                    detail(row) if callable(detail) else detail,
                )
                for row in rows
            ]
        )
        moved.extend((source, row) for row in rows)
    return moved


def move_each(
    event: str,
    params: list[dict[str, Any]],
    *,
    guard: Iterable[ColumnElement[bool]] = (),
    values: Mapping[str, Any] | None = None,
    amount: Callable[[dict[str, Any]], int | None] | None = None,
    detail: Callable[[dict[str, Any]], str] | None = None,
) -> None:
    """One executemany for many pledges with values of their own (bind parameters named
    in `values` and `guard`, each params dict carrying `pid`). All of them move or the
    caller must roll back: PartialMove says that some had moved meanwhile."""
    transition = BY_EVENT[event]
    (source,) = transition.sources
    table = Pledge.__table__
    assert isinstance(table, Table)
    moved = (
        db.session.connection()
        .execute(
            table.update()
            .where(table.c.id == bindparam("pid"), table.c.status == source.value, *guard)
            .values(status=transition.target.value, **(values or {})),
            params,
        )
        .rowcount
    )
    if moved != len(params):
        raise PartialMove(f"{moved} of {len(params)} pledges moved")
    _insert_events(
        [
            _event_row(
                event,
                p["pid"],
                source,
                transition.target,
                amount(p) if amount else None,
                detail(p) if detail else "",
            )
            for p in params
        ]
    )


def move_pledge(
    pledge: Pledge,
    event: str,
    *,
    values: Mapping[str, Any] | None = None,
    guard: Iterable[ColumnElement[bool]] = (),
    detail: str = "",
    amount: int | None = None,
) -> PledgeStatus | None:
    """Move one loaded pledge and keep the object in step. Returns the state it left,
    or None when it had moved elsewhere meanwhile (nothing written)."""
    values = dict(values or {})
    settable = {k: v for k, v in values.items() if not isinstance(v, ColumnElement)}
    computed = [getattr(Pledge, k) for k in values if k not in settable]
    rows = _move(
        event,
        pledge.id,
        guard=guard,
        values=values,
        returning=computed,
        limit=None,
        amount=(lambda row: amount) if amount is not None else None,
        detail=detail,
    )
    if not rows:
        return None
    ((source, row),) = rows
    # The row already says so; tell the ORM without queueing a second UPDATE.
    set_committed_value(pledge, "status", row.status)
    for name, value in settable.items():
        set_committed_value(pledge, name, value)
    for column in computed:
        set_committed_value(pledge, column.key, getattr(row, column.key))
    return source


def move_or_raise(pledge: Pledge, event: str, **kwargs: Any) -> None:
    if move_pledge(pledge, event, **kwargs) is None:
        raise StaleState(f"pledge {pledge.id} is no longer {pledge.status}")


def begin(pledge: Pledge) -> None:
    """A new pledge starts in the initial state, with its `created` event."""
    pledge.status = INITIAL
    db.session.add(pledge)
    db.session.flush()
    _insert_events([_event_row("created", pledge.id, None, INITIAL, pledge.amount, "")])


def begin_period_charges(rows: list[dict[str, Any]]) -> list[int]:
    """Insert one period's charges of standing pledges (rows of Pledge column values
    without a status), each `active` with its `period_charge_opened` event; returns
    their ids, in no particular order. The unique (parent_id, period) index refuses a
    second charge of a pledge for a period."""
    if not rows:
        return []
    opened = db.session.execute(
        insert(Pledge).returning(Pledge.id, Pledge.amount),
        [{**row, "status": PERIOD_CHARGE_INITIAL} for row in rows],
    ).all()
    _insert_events(
        [
            _event_row("period_charge_opened", o.id, None, PERIOD_CHARGE_INITIAL, o.amount, "")
            for o in opened
        ]
    )
    return [o.id for o in opened]


def note(
    pledge_ids: int | Sequence[int], kind: str, *, amount: int | None = None, detail: str = ""
) -> None:
    """An event that changes no state (amount changed, card replaced, reminder sent)."""
    if kind not in NOTES:
        raise ValueError(f"{kind} is a transition or unknown: use move()")
    ids = [pledge_ids] if isinstance(pledge_ids, int) else list(pledge_ids)
    _insert_events([_event_row(kind, pid, None, None, amount, detail) for pid in ids])


def _event_row(
    kind: str,
    pledge_id: int,
    source: PledgeStatus | None,
    target: PledgeStatus | None,
    amount: int | None,
    detail: str,
) -> dict[str, Any]:
    return {
        "pledge_id": pledge_id,
        "kind": kind,
        "from_status": source.value if source else None,
        "to_status": target.value if target else None,
        "amount": amount,
        "detail": detail,
    }


def _insert_events(rows: list[dict[str, Any]]) -> None:
    if rows:  # each stamped by the column's default, core.clock's time
        db.session.execute(insert(PledgeEvent), rows)


def diagram() -> str:
    """The machine as a Mermaid state diagram, generated from TRANSITIONS."""
    return MACHINE.diagram()


if __name__ == "__main__":
    print(diagram())

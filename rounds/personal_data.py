"""What matching rounds hold about a person (their committee seats), for closing their
account and exporting their data (receivers of accounts.signals)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from accounts.models import User
from core.extensions import db
from core.work import RuleError
from rounds.models import RoundMember, RoundRole, RoundStatus


def _seats(user: User) -> list[RoundMember]:
    return list(
        db.session.scalars(
            select(RoundMember).where(RoundMember.user_id == user.id).order_by(RoundMember.id)
        )
    )


def close(user: User, **_: Any) -> None:
    """The person leaves every round's committee; the owner of a round that is not
    final yet is refused: its pool needs someone to finalise it."""
    seats = _seats(user)
    running = [
        s.round.name
        for s in seats
        if s.role == RoundRole.OWNER and s.round.status != RoundStatus.FINAL
    ]
    if running:
        raise RuleError(
            _l(
                "You own the matching round “%(name)s”, which is not final yet. Close "
                "your account once it is.",
                name=running[0],
            ),
            "confirm",
        )
    for seat in seats:
        db.session.delete(seat)
    db.session.flush()


def export(user: User, **_: Any) -> tuple[str, list[dict[str, Any]]]:
    return "matching_round_committees", [
        {"round": s.round_id, "name": s.round.name, "role": s.role, "status": s.round.status}
        for s in _seats(user)
    ]

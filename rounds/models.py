"""Matching rounds: a funder's pool, the campaigns that joined, the committee."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import Model
from core.money import Money
from core.states import StateMachine, Transition
from core.types import UTCDateTime, enum_check


class Rule(enum.StrEnum):
    CAPPED_MATCH = "capped_match"
    QUADRATIC = "quadratic"

    @property
    def label(self) -> str:
        return str(RULE_LABELS[self])


RULE_LABELS = {
    Rule.CAPPED_MATCH: _l("Capped match: each pledge matched, first charged first matched"),
    Rule.QUADRATIC: _l("Quadratic: the pool favours many backers over large pledges"),
}


class RoundStatus(enum.StrEnum):
    OPEN = "open"  # taking applications; pledges charged in its window count
    CLOSED = "closed"  # past its window, not finalised yet (shown, never stored)
    FINAL = "final"  # the matches are on the ledger


ROUND_MACHINE = StateMachine(
    "round",
    [RoundStatus.OPEN],
    [Transition("finalise", (RoundStatus.OPEN,), RoundStatus.FINAL)],
)

STATUS_LABELS = {
    RoundStatus.OPEN: _l("Open"),
    RoundStatus.CLOSED: _l("Closed, to be finalised"),
    RoundStatus.FINAL: _l("Final"),
}


class RoundRole(enum.StrEnum):
    OWNER = "owner"
    CURATOR = "curator"  # accepts or refuses campaigns
    TREASURER = "treasurer"  # records the pool's money, finalises


class RoundPermission(enum.StrEnum):
    EDIT = "edit"
    MANAGE_TEAM = "manage_team"
    CURATE = "curate"
    RECORD_POOL = "record_pool"
    FINALISE = "finalise"


ROUND_ROLE_PERMISSIONS: dict[RoundRole, frozenset[RoundPermission]] = {
    RoundRole.OWNER: frozenset(RoundPermission),
    RoundRole.CURATOR: frozenset({RoundPermission.CURATE}),
    RoundRole.TREASURER: frozenset({RoundPermission.RECORD_POOL, RoundPermission.FINALISE}),
}

ROUND_ROLE_LABELS = {
    RoundRole.OWNER: _l("Owner"),
    RoundRole.CURATOR: _l("Curator"),
    RoundRole.TREASURER: _l("Treasurer"),
}


class EntryStatus(enum.StrEnum):
    APPLIED = "applied"
    ACCEPTED = "accepted"
    REFUSED = "refused"


# A campaign's application: curators decide once (a late second click changes nothing).
ENTRY_MACHINE = StateMachine(
    "round entry",
    [EntryStatus.APPLIED],
    [
        Transition("accept", (EntryStatus.APPLIED,), EntryStatus.ACCEPTED),
        Transition("refuse", (EntryStatus.APPLIED,), EntryStatus.REFUSED),
    ],
)

ENTRY_STATUS_LABELS = {
    EntryStatus.APPLIED: _l("Waiting for the curators"),
    EntryStatus.ACCEPTED: _l("Accepted"),
    EntryStatus.REFUSED: _l("Refused"),
}


class Round(Model):
    __tablename__ = "rounds"
    __table_args__ = (
        enum_check("rule", Rule, "rule_known"),
        enum_check("status", RoundStatus, "status_known"),
        CheckConstraint("closes_at > opens_at", name="window_positive"),
        CheckConstraint("pool_amount >= 0", name="pool_not_negative"),
        CheckConstraint("ratio_bp > 0", name="ratio_positive"),
        CheckConstraint(
            "max_share_bp IS NULL OR (max_share_bp > 0 AND max_share_bp <= 10000)",
            name="max_share_in_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    # One source per line: "title https://…", shown as links.
    sources: Mapped[str] = mapped_column(Text, default="")
    funder: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    rule: Mapped[str] = mapped_column(String(20))
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=RoundStatus.OPEN, index=True)
    # capped_match: matched at ratio_bp / 10 000, within these caps (minor units)
    ratio_bp: Mapped[int] = mapped_column(Integer, default=10_000)
    cap_per_pledge: Mapped[int | None] = mapped_column(BigInteger)
    cap_per_backer: Mapped[int | None] = mapped_column(BigInteger)
    cap_per_campaign: Mapped[int | None] = mapped_column(BigInteger)
    # quadratic: the largest share of the pool one campaign may get, and the smallest
    # pledge that counts
    max_share_bp: Mapped[int | None] = mapped_column(Integer)
    min_contribution: Mapped[int] = mapped_column(BigInteger, default=0)
    # Every unit recorded into the pool (its ledger account holds what is not matched
    # out yet); moved in the same transaction as the ledger entry.
    pool_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finalised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    members: Mapped[list[RoundMember]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="RoundMember.id"
    )
    entries: Mapped[list[RoundEntry]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="RoundEntry.id"
    )

    @property
    def pool(self) -> Money:
        return Money(self.pool_amount, self.currency)

    @property
    def public_status(self) -> RoundStatus:
        if self.status == RoundStatus.OPEN and self.closes_at <= utcnow():
            return RoundStatus.CLOSED
        return RoundStatus(self.status)

    @property
    def status_label(self) -> str:
        return str(STATUS_LABELS[self.public_status])

    @property
    def rule_label(self) -> str:
        return Rule(self.rule).label

    @property
    def accepted(self) -> list[RoundEntry]:
        return [e for e in self.entries if e.status == EntryStatus.ACCEPTED]

    def money(self, amount: int | None) -> Money | None:
        return None if amount is None else Money(amount, self.currency)

    def role_of(self, user) -> RoundRole | None:
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        for member in self.members:
            if member.user_id == user.id:
                return RoundRole(member.role)
        return None

    def can(self, user, permission: RoundPermission) -> bool:
        role = self.role_of(user)
        return role is not None and permission in ROUND_ROLE_PERMISSIONS[role]


class RoundMember(Model):
    """A member of a round's committee."""

    __tablename__ = "round_members"
    __table_args__ = (
        UniqueConstraint("round_id", "user_id", name="uq_round_members_member"),
        enum_check("role", RoundRole, "role_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    round: Mapped[Round] = relationship(back_populates="members")
    user: Mapped[User] = relationship()

    @property
    def role_label(self) -> str:
        return str(ROUND_ROLE_LABELS[RoundRole(self.role)])


class RoundInvitation(Model):
    """An invitation to a round's committee, accepted from the address it went to."""

    __tablename__ = "round_invitations"
    __table_args__ = (enum_check("role", RoundRole, "role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    invited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    round: Mapped[Round] = relationship()


class RoundEntry(Model):
    """A campaign's application to a round, and once final, its match."""

    __tablename__ = "round_entries"
    __table_args__ = (
        UniqueConstraint("round_id", "campaign_id", name="uq_round_entries_campaign"),
        enum_check("status", EntryStatus, "status_known"),
        CheckConstraint("match_amount IS NULL OR match_amount >= 0", name="match_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=EntryStatus.APPLIED)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was refused
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    match_amount: Mapped[int | None] = mapped_column(BigInteger)

    round: Mapped[Round] = relationship(back_populates="entries")
    campaign: Mapped[Campaign] = relationship()

    @property
    def status_label(self) -> str:
        return str(ENTRY_STATUS_LABELS[EntryStatus(self.status)])

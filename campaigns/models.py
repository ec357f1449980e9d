from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from accounts.models import User
from core.clock import utcnow
from core.extensions import Model
from core.money import Money
from core.states import StateMachine, Transition
from core.types import UTCDateTime, enum_check


class CampaignKind(enum.StrEnum):
    WAGE_STRUGGLE = "wage_struggle"
    STRIKE_FUND = "strike_fund"
    LEGAL_DEFENCE = "legal_defence"
    MUTUAL_AID = "mutual_aid"
    PUBLIC_GOOD = "public_good"

    @property
    def label(self) -> str:
        return str(KIND_LABELS[self])


KIND_LABELS = {
    CampaignKind.WAGE_STRUGGLE: _l("Wage struggle"),
    CampaignKind.STRIKE_FUND: _l("Strike fund"),
    CampaignKind.LEGAL_DEFENCE: _l("Legal defence"),
    CampaignKind.MUTUAL_AID: _l("Mutual aid"),
    CampaignKind.PUBLIC_GOOD: _l("Public good"),
}


class FundingModel(enum.StrEnum):
    ALL_OR_NOTHING = "all_or_nothing"
    FLEXIBLE = "flexible"

    @property
    def label(self) -> str:
        return str(FUNDING_LABELS[self])


FUNDING_LABELS = {
    FundingModel.ALL_OR_NOTHING: _l("All or nothing: nobody is charged unless the goal is met"),
    FundingModel.FLEXIBLE: _l("Flexible: keep what is raised"),
}


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    LIVE = "live"
    ENDED = "ended"  # past the deadline, not decided yet (shown, never stored by us)
    FUNDED = "funded"  # decided at the deadline: charges are about to start
    SETTLING = "settling"  # charging pledges (and retrying declines)
    SETTLED = "settled"  # every pledge charged or dropped
    UNFUNDED = "unfunded"  # missed its threshold: releasing pledges
    RELEASED = "released"  # every pledge released, nobody charged
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"


C = CampaignStatus
# Every status but these can be suspended (and is restored to on restore).
_SUSPENDABLE = tuple(s for s in C if s not in (C.DRAFT, C.ENDED, C.SUSPENDED))
CAMPAIGN_MACHINE = StateMachine(
    "campaign",
    # Drafts are created by organizers; the demo and tests also seed live campaigns.
    [C.DRAFT, C.LIVE],
    [
        Transition("launch", (C.DRAFT,), C.LIVE),
        Transition("cancel", (C.DRAFT, C.LIVE), C.CANCELLED),
        Transition("decide_funded", (C.LIVE,), C.FUNDED),
        Transition("decide_unfunded", (C.LIVE,), C.UNFUNDED),
        Transition("start_settling", (C.FUNDED,), C.SETTLING),
        Transition("settle", (C.FUNDED, C.SETTLING), C.SETTLED),
        Transition("release", (C.UNFUNDED,), C.RELEASED),
        # A recurring campaign's last period is done: its charges were made period by
        # period (campaigns.periods), so it ends settled.
        Transition("end_recurrence", (C.LIVE,), C.SETTLED),
        Transition("suspend", _SUSPENDABLE, C.SUSPENDED),
        # Back to what it was, or released when its deadline passed meanwhile.
        *(Transition(f"restore_{state.value}", (C.SUSPENDED,), state) for state in _SUSPENDABLE),
    ],
)

# After the deadline: decided campaigns, whatever the outcome.
DECIDED_STATUSES = (
    CampaignStatus.FUNDED,
    CampaignStatus.SETTLING,
    CampaignStatus.SETTLED,
    CampaignStatus.UNFUNDED,
    CampaignStatus.RELEASED,
)

STATUS_LABELS = {
    CampaignStatus.DRAFT: _l("Draft"),
    CampaignStatus.LIVE: _l("Live"),
    CampaignStatus.ENDED: _l("Ended"),
    CampaignStatus.FUNDED: _l("Funded"),
    CampaignStatus.SETTLING: _l("Funded, collecting pledges"),
    CampaignStatus.SETTLED: _l("Funded"),
    CampaignStatus.UNFUNDED: _l("Not funded"),
    CampaignStatus.RELEASED: _l("Not funded"),
    CampaignStatus.CANCELLED: _l("Cancelled"),
    CampaignStatus.SUSPENDED: _l("Suspended"),
}


class OrganizerRole(enum.StrEnum):
    OWNER = "owner"
    ORGANIZER = "organizer"
    TREASURER = "treasurer"


class Permission(enum.StrEnum):
    EDIT = "edit"  # the campaign's page, story, goal (drafts), sources
    LAUNCH = "launch"
    POST_UPDATE = "post_update"
    CANCEL = "cancel"
    MANAGE_TEAM = "manage_team"
    RECORD_DISBURSEMENT = "record_disbursement"
    APPROVE_DISBURSEMENT = "approve_disbursement"  # never one's own (two-person rule)
    SEE_MONEY = "see_money"  # settlement progress, backers, disbursements waiting


# The committee's role matrix (README, "Roles"): a treasurer records and approves
# money movements and sees the money, but does not speak for the campaign.
ROLE_PERMISSIONS: dict[OrganizerRole, frozenset[Permission]] = {
    OrganizerRole.OWNER: frozenset(Permission),
    OrganizerRole.ORGANIZER: frozenset(
        {
            Permission.EDIT,
            Permission.LAUNCH,
            Permission.POST_UPDATE,
            Permission.APPROVE_DISBURSEMENT,
            Permission.SEE_MONEY,
        }
    ),
    OrganizerRole.TREASURER: frozenset(
        {Permission.RECORD_DISBURSEMENT, Permission.APPROVE_DISBURSEMENT, Permission.SEE_MONEY}
    ),
}


def role_can(role: OrganizerRole | None, permission: Permission | str) -> bool:
    return role is not None and Permission(permission) in ROLE_PERMISSIONS[OrganizerRole(role)]


ROLE_LABELS = {
    OrganizerRole.OWNER: _l("Owner"),
    OrganizerRole.ORGANIZER: _l("Organizer"),
    OrganizerRole.TREASURER: _l("Treasurer"),
}


class Campaign(Model):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("goal_amount > 0", name="goal_positive"),
        CheckConstraint("pledged_amount >= 0", name="pledged_not_negative"),
        CheckConstraint("backer_count >= 0", name="backers_not_negative"),
        CheckConstraint("min_backers IS NULL OR min_backers > 0", name="min_backers_positive"),
        enum_check("kind", CampaignKind, "kind_known"),
        enum_check("status", CampaignStatus, "status_known"),
        enum_check("funding_model", FundingModel, "funding_model_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(120))
    summary: Mapped[str] = mapped_column(String(200))
    story: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(16), default="en")
    currency: Mapped[str] = mapped_column(String(3))
    goal_amount: Mapped[int] = mapped_column(BigInteger)
    min_backers: Mapped[int | None] = mapped_column(Integer)
    funding_model: Mapped[str] = mapped_column(String(20), default=FundingModel.ALL_OR_NOTHING)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    budget_note: Mapped[str] = mapped_column(Text, default="")
    cover_image: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.DRAFT, index=True)
    # Running totals of active pledges, kept in the same transaction as the pledges.
    pledged_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    backer_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspension_reason: Mapped[str] = mapped_column(Text, default="")
    # Where a restored campaign goes back to.
    suspended_from: Mapped[str | None] = mapped_column(String(20))
    # A draft's chosen web address, taken at launch (until then it lives at a private
    # one, so drafts cannot be discovered by picking addresses).
    requested_slug: Mapped[str | None] = mapped_column(String(80))
    # Fixed at the deadline: the public final figures, and what was actually collected.
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    final_pledged_amount: Mapped[int | None] = mapped_column(BigInteger)
    final_backer_count: Mapped[int | None] = mapped_column(Integer)
    collected_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The reminder to backers a few days before the deadline went out (once).
    deadline_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organizers: Mapped[list[Organizer]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="Organizer.id"
    )
    # A recurring campaign's periods (campaigns.periods.Recurrence); None for one-off.
    recurrence: Mapped[Any] = relationship(
        "Recurrence", back_populates="campaign", uselist=False, cascade="all, delete-orphan"
    )
    budget_lines: Mapped[list[BudgetLine]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="BudgetLine.position"
    )
    sources: Mapped[list[Source]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="Source.position"
    )
    updates: Mapped[list[CampaignUpdate]] = relationship(
        back_populates="campaign",
        cascade="all, delete-orphan",
        order_by="CampaignUpdate.created_at.desc()",
    )

    @validates("status")
    def _moves_by_the_table(self, _key: str, status: str) -> str:
        """Services move a campaign by assigning its status: only along the table
        (settlement's guarded UPDATEs follow the same table)."""
        current = self.status
        if (
            current is not None
            and current != status
            and not CAMPAIGN_MACHINE.allowed(current, status)
        ):
            raise ValueError(f"a campaign cannot go from {current} to {status}")
        return status

    @property
    def goal(self) -> Money:
        return Money(self.goal_amount, self.currency)

    @property
    def pledged(self) -> Money:
        return Money(self.pledged_amount, self.currency)

    @property
    def budget_total(self) -> Money:
        return Money(sum(line.amount for line in self.budget_lines), self.currency)

    @property
    def final_pledged(self) -> Money:
        return Money(self.final_pledged_amount or 0, self.currency)

    @property
    def collected(self) -> Money:
        return Money(self.collected_amount or 0, self.currency)

    @property
    def is_decided(self) -> bool:
        return self.status in DECIDED_STATUSES

    @property
    def kind_label(self) -> str:
        return CampaignKind(self.kind).label

    @property
    def funding_label(self) -> str:
        return FundingModel(self.funding_model).label

    @property
    def public_status(self) -> CampaignStatus:
        """What people see: a live campaign past its deadline has ended."""
        if self.status == CampaignStatus.LIVE and self.deadline <= utcnow():
            return CampaignStatus.ENDED
        return CampaignStatus(self.status)

    @property
    def status_label(self) -> str:
        return str(STATUS_LABELS[self.public_status])

    @property
    def is_draft(self) -> bool:
        return self.status == CampaignStatus.DRAFT

    @property
    def is_live(self) -> bool:
        return self.public_status == CampaignStatus.LIVE

    @property
    def is_funded_now(self) -> bool:
        """Whether the pledges as they stand meet the goal and the minimum of backers."""
        return self.pledged_amount >= self.goal_amount and (
            self.min_backers is None or self.backer_count >= self.min_backers
        )

    @property
    def percent_funded(self) -> int:
        return self.pledged_amount * 100 // self.goal_amount if self.goal_amount else 0

    @property
    def seconds_left(self) -> int:
        return max(0, int((self.deadline - utcnow()).total_seconds()))

    def role_of(self, user) -> OrganizerRole | None:
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        for organizer in self.organizers:
            if organizer.user_id == user.id:
                return OrganizerRole(organizer.role)
        return None

    def __repr__(self) -> str:
        return f"<Campaign {self.slug}>"


class Invitation(Model):
    """An invitation to a committee: the person appears on it only after accepting,
    from the address it was sent to."""

    __tablename__ = "committee_invitations"
    __table_args__ = (enum_check("role", OrganizerRole, "role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    invited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()


class Organizer(Model):
    """A member of a campaign's committee."""

    __tablename__ = "campaign_organizers"
    __table_args__ = (
        UniqueConstraint("campaign_id", "user_id", name="uq_campaign_organizers_member"),
        enum_check("role", OrganizerRole, "role_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="organizers")
    user: Mapped[User] = relationship()

    @property
    def role_label(self) -> str:
        return str(ROLE_LABELS[OrganizerRole(self.role)])


class BudgetLine(Model):
    __tablename__ = "campaign_budget_lines"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(160))
    amount: Mapped[int] = mapped_column(BigInteger)
    required: Mapped[bool] = mapped_column(Boolean, default=True)

    campaign: Mapped[Campaign] = relationship(back_populates="budget_lines")

    @property
    def money(self) -> Money:
        return Money(self.amount, self.campaign.currency)


class Source(Model):
    """A citation backing up the campaign's claims."""

    __tablename__ = "campaign_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))

    campaign: Mapped[Campaign] = relationship(back_populates="sources")


class CampaignUpdate(Model):
    """News the organizers post to their supporters."""

    __tablename__ = "campaign_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(160))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set (once, by the job that queues them) when the backers were emailed it.
    emailed_to_backers: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    campaign: Mapped[Campaign] = relationship(back_populates="updates")
    author: Mapped[User] = relationship()


class Report(Model):
    """Someone's report of an abusive campaign, for the moderators."""

    __tablename__ = "campaign_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str] = mapped_column(String(20), default="")

    campaign: Mapped[Campaign] = relationship()

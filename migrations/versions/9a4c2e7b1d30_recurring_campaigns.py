"""recurring campaigns: a campaign's recurrence and its periods; a pledge can be a
standing (recurring) pledge, or one period's charge of one

Revision ID: 9a4c2e7b1d30
Revises: 7f3a1c5d9e20
Create Date: 2026-12-06 14:15:00

"""
from alembic import op
import sqlalchemy as sa


revision = "9a4c2e7b1d30"
down_revision = "7f3a1c5d9e20"
branch_labels = None
depends_on = None


STATUSES = (
    "'pending', 'active', 'cancelled', 'charging', 'charged', 'failed', "
    "'needs_authentication', 'dropped', 'released', 'refunded'"
)


def _pledge_statuses(statuses: str) -> None:
    with op.batch_alter_table("pledges") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_pledges_status_known"), type_="check")
        batch_op.create_check_constraint("status_known", f"status IN ({statuses})")


def upgrade():
    # A standing pledge can be paused by its supporter.
    _pledge_statuses(STATUSES + ", 'paused'")
    op.create_table(
        "campaign_recurrences",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("threshold_amount", sa.BigInteger(), nullable=True),
        sa.Column("threshold_backers", sa.Integer(), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_periods", sa.Integer(), nullable=False),
        sa.CheckConstraint("interval IN ('week', 'month')", name=op.f("ck_campaign_recurrences_interval_known")),
        sa.CheckConstraint("threshold_amount IS NULL OR threshold_amount > 0", name=op.f("ck_campaign_recurrences_threshold_amount_positive")),
        sa.CheckConstraint("threshold_backers IS NULL OR threshold_backers > 0", name=op.f("ck_campaign_recurrences_threshold_backers_positive")),
        sa.CheckConstraint("max_periods > 0", name=op.f("ck_campaign_recurrences_max_periods_positive")),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_recurrences_campaign_id_campaigns"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_campaign_recurrences")),
    )
    op.create_table(
        "campaign_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("pledged_amount", sa.BigInteger(), nullable=True),
        sa.Column("backer_count", sa.Integer(), nullable=True),
        sa.Column("collected_amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("missed_late", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notice_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open', 'met', 'missed', 'charging', 'charged')", name=op.f("ck_campaign_periods_status_known")),
        sa.CheckConstraint("number > 0", name=op.f("ck_campaign_periods_number_positive")),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_periods_campaign_id_campaigns"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_periods")),
        sa.UniqueConstraint("campaign_id", "number", name="uq_campaign_periods_number"),
    )
    op.add_column("pledges", sa.Column("recurring", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("pledges", sa.Column("parent_id", sa.Integer(), nullable=True))
    op.add_column("pledges", sa.Column("period", sa.Integer(), nullable=True))
    op.add_column("pledges", sa.Column("recurring_until", sa.DateTime(timezone=True), nullable=True))
    # One charge per standing pledge per period, whatever runs twice.
    op.create_index("ix_pledges_parent_period", "pledges", ["parent_id", "period"], unique=True)


def downgrade():
    _pledge_statuses(STATUSES)
    op.drop_index("ix_pledges_parent_period", table_name="pledges")
    op.drop_column("pledges", "recurring_until")
    op.drop_column("pledges", "period")
    op.drop_column("pledges", "parent_id")
    op.drop_column("pledges", "recurring")
    op.drop_table("campaign_periods")
    op.drop_table("campaign_recurrences")

"""notifications: a language per account, one-click opt-outs, List-Unsubscribe on
queued mail, updates emailed to backers, the before-deadline reminder sent once

Revision ID: 7f3a1c5d9e20
Revises: 3b7d9e4c2a10
Create Date: 2026-12-06 13:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = "7f3a1c5d9e20"
down_revision = "3b7d9e4c2a10"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs (SQLite has them): a batch copy of campaigns or campaign_updates
    # would break the search triggers that name them.
    op.add_column("users", sa.Column("locale", sa.String(length=12), server_default="", nullable=False))
    op.add_column(
        "campaigns", sa.Column("deadline_reminded_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "campaign_updates",
        sa.Column("emailed_to_backers", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "outbox_messages", sa.Column("unsubscribe_url", sa.Text(), server_default="", nullable=False)
    )
    op.create_table(
        "email_optouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_optouts")),
        sa.UniqueConstraint("address_key", "topic", "scope", name=op.f("uq_email_optouts_address_key")),
    )


def downgrade():
    op.drop_table("email_optouts")
    # SQLite 3.35+ drops columns in place (no batch copy, for the same reason).
    op.drop_column("outbox_messages", "unsubscribe_url")
    op.drop_column("campaign_updates", "emailed_to_backers")
    op.drop_column("campaigns", "deadline_reminded_at")
    op.drop_column("users", "locale")

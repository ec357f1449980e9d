"""accounts can be closed: when (the row stays as a tombstone for what it wrote)

Revision ID: 3b7d9e4c2a10
Revises: 5c1e0a7f2b31
Create Date: 2026-12-06 13:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = "3b7d9e4c2a10"
down_revision = "5c1e0a7f2b31"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("closed_at")

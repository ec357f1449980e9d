"""batch disbursements: many payees in one, their list kept by the committee and
committed to in public

Revision ID: b5e8d2a4c6f1
Revises: 9a4c2e7b1d30
Create Date: 2026-12-06 14:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = "b5e8d2a4c6f1"
down_revision = "9a4c2e7b1d30"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("disbursements", sa.Column("payee_count", sa.Integer(), server_default="1", nullable=False))
    op.add_column("disbursements", sa.Column("commitment", sa.String(length=64), server_default="", nullable=False))
    op.create_table(
        "disbursement_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("disbursement_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["disbursement_id"], ["disbursements.id"], name=op.f("fk_disbursement_lines_disbursement_id_disbursements")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disbursement_lines")),
    )
    op.create_index(op.f("ix_disbursement_lines_disbursement_id"), "disbursement_lines", ["disbursement_id"])


def downgrade():
    op.drop_index(op.f("ix_disbursement_lines_disbursement_id"), table_name="disbursement_lines")
    op.drop_table("disbursement_lines")
    op.drop_column("disbursements", "commitment")
    op.drop_column("disbursements", "payee_count")

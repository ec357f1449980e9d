"""disbursement statuses checked

Revision ID: 09d8662ad279
Revises: 7b76fdad3d4d
Create Date: 2026-11-22 07:16:14.423881

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '09d8662ad279'
down_revision = '7b76fdad3d4d'
branch_labels = None
depends_on = None


def upgrade():
    # Statuses a disbursement can have (ledger.disbursements.DisbursementStatus); rows
    # only ever held these three.
    with op.batch_alter_table("disbursements", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "status_known", "status IN ('pending', 'approved', 'rejected')"
        )


def downgrade():
    with op.batch_alter_table("disbursements", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_disbursements_status_known"), type_="check")

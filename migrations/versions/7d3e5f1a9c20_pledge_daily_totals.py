"""a campaign's pledged total per day, kept by triggers (the chart at a million pledges)

The campaign page's chart summed every counted pledge of the campaign per day on each
rendering: about a second at a million pledges, after every write. The totals per day
of activation (UTC) are now kept in `pledge_daily_totals` by triggers on `pledges`,
whoever writes a pledge (the lifecycle's bulk moves, the demo loader, an operator's
SQL), and filled from the pledges already there. A pledge counts while its status is
one of COUNTED (payments.models.COUNTED_STATUSES at the time of writing); pledges are
never deleted, so there is no delete trigger.

Revision ID: 7d3e5f1a9c20
Revises: 0c040c705155
Create Date: 2026-12-06 23:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "7d3e5f1a9c20"
down_revision = "0c040c705155"
branch_labels = None
depends_on = None

COUNTED = "('active', 'charging', 'charged', 'failed', 'needs_authentication')"

PG_DAY = "(({row}.activated_at AT TIME ZONE 'UTC')::date)"
SQLITE_DAY = "date({row}.activated_at)"


def _counts(row: str) -> str:
    return f"({row}.activated_at IS NOT NULL AND {row}.status IN {COUNTED})"


# Statement triggers over transition tables: a statement that writes many pledges (a
# bulk load, a batch of releases) makes one upsert per campaign and day, not one per
# pledge (repeated updates of one row inside a transaction grow its version chain).
# Moves between counted states (settlement) net to zero and write nothing.
def _pg_counted(rows: str, sign: str) -> str:
    return (
        f"SELECT campaign_id, {PG_DAY.format(row=rows)} AS day, {sign}amount AS amount"
        f" FROM {rows} WHERE {_counts(rows)}"
    )


PG_UP = f"""
CREATE FUNCTION pledge_daily_totals_trigger() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pledge_daily_totals AS t (campaign_id, day, amount)
    SELECT campaign_id, day, sum(amount) FROM ({_pg_counted("new_rows", "")}) added
    GROUP BY campaign_id, day
    ON CONFLICT (campaign_id, day) DO UPDATE SET amount = t.amount + EXCLUDED.amount;
  ELSE
    INSERT INTO pledge_daily_totals AS t (campaign_id, day, amount)
    SELECT campaign_id, day, sum(amount) FROM (
      {_pg_counted("new_rows", "")} UNION ALL {_pg_counted("old_rows", "-")}
    ) moved
    GROUP BY campaign_id, day HAVING sum(amount) <> 0
    ON CONFLICT (campaign_id, day) DO UPDATE SET amount = t.amount + EXCLUDED.amount;
  END IF;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER pledges_daily_totals_insert AFTER INSERT ON pledges
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION pledge_daily_totals_trigger();
CREATE TRIGGER pledges_daily_totals_update AFTER UPDATE ON pledges
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION pledge_daily_totals_trigger();
"""

PG_DOWN = """
DROP TRIGGER IF EXISTS pledges_daily_totals_update ON pledges;
DROP TRIGGER IF EXISTS pledges_daily_totals_insert ON pledges;
DROP FUNCTION IF EXISTS pledge_daily_totals_trigger();
"""

# SQLite updates rows in place: a trigger per row, skipping updates that change none
# of what a day's total depends on (settlement's moves between counted states).
CHANGED = (
    "OLD.amount IS NOT NEW.amount"
    " OR OLD.activated_at IS NOT NEW.activated_at"
    " OR OLD.campaign_id IS NOT NEW.campaign_id"
    f" OR {_counts('OLD')} IS NOT {_counts('NEW')}"
)


def _sqlite_add(row: str, sign: str) -> str:
    return (
        "INSERT INTO pledge_daily_totals (campaign_id, day, amount)"
        f" SELECT {row}.campaign_id, {SQLITE_DAY.format(row=row)}, {sign}{row}.amount"
        f" WHERE {_counts(row)}"
        " ON CONFLICT (campaign_id, day) DO UPDATE SET amount = amount + excluded.amount;"
    )


SQLITE_UP = [
    "CREATE TRIGGER pledges_daily_totals_insert AFTER INSERT ON pledges"
    f" BEGIN {_sqlite_add('NEW', '')} END",
    "CREATE TRIGGER pledges_daily_totals_update"
    " AFTER UPDATE OF status, amount, activated_at, campaign_id ON pledges"
    f" WHEN {CHANGED}"
    f" BEGIN {_sqlite_add('OLD', '-')} {_sqlite_add('NEW', '')} END",
]

SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS pledges_daily_totals_update",
    "DROP TRIGGER IF EXISTS pledges_daily_totals_insert",
]


def upgrade():
    op.create_table(
        "pledge_daily_totals",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_pledge_daily_totals_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "day", name=op.f("pk_pledge_daily_totals")),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(PG_UP)
    else:
        for statement in SQLITE_UP:
            op.execute(statement)
    day = (PG_DAY if postgresql else SQLITE_DAY).format(row="pledges")
    op.execute(
        "INSERT INTO pledge_daily_totals (campaign_id, day, amount)"
        f" SELECT campaign_id, {day}, sum(amount) FROM pledges WHERE {_counts('pledges')}"
        f" GROUP BY campaign_id, {day}"
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DOWN)
    else:
        for statement in SQLITE_DOWN:
            op.execute(statement)
    op.drop_table("pledge_daily_totals")

"""The Alembic migrations and the models describe the same schema, on both backends."""

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect

from campaigns.search import include_in_autogenerate
from core.extensions import db


def test_models_match_migrations(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "render_as_batch": True,
                # The full-text index lives outside the models (triggers keep it).
                "include_name": include_in_autogenerate,
            },
        )
        differences = compare_metadata(context, db.metadata)
    assert differences == []


_QUOTED = re.compile(r"'([^']*)'")


def _literals(sqltext: str) -> set[str]:
    return set(_QUOTED.findall(sqltext))


def test_every_check_constraint_of_the_models_is_in_the_database(app):
    """Alembic's comparison cannot see CHECK constraints: this test reflects them (on
    SQLite and PostgreSQL) and compares each named model CHECK with the database's,
    by name and, for the enum checks, by the set of allowed values."""
    with app.app_context():
        inspector = inspect(db.engine)
        missing, different = [], []
        for table in db.metadata.sorted_tables:
            live = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table.name)}
            for constraint in table.constraints:
                if not isinstance(constraint, CheckConstraint):
                    continue
                name = constraint.name
                if name not in live:
                    missing.append(name)
                    continue
                expected = _literals(str(constraint.sqltext))
                if expected and _literals(live[name]) != expected:
                    different.append((name, sorted(expected), live[name]))
    assert missing == [] and different == []


def test_enum_checks_cover_every_state_of_the_state_machines():
    from campaigns.models import Campaign, CampaignStatus
    from ledger.disbursements import Disbursement, DisbursementStatus
    from payments.models import Pledge, PledgeStatus

    for model, enum_class in (
        (Pledge, PledgeStatus),
        (Campaign, CampaignStatus),
        (Disbursement, DisbursementStatus),
    ):
        [check] = [
            c
            for c in model.__table__.constraints
            if isinstance(c, CheckConstraint) and str(c.name).endswith("status_known")
        ]
        assert _literals(str(check.sqltext)) == {member.value for member in enum_class}

"""Column types shared by every feature package."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import CheckConstraint
from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python on every backend.

    PostgreSQL stores timestamptz; SQLite has no time zones, so values are stored as
    naive UTC and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def enum_check(column: str, enum_class, name: str | None = None) -> CheckConstraint:
    """A CHECK that keeps `column` within the enum's values, generated from the enum so
    the two never drift apart (tests/test_schema.py compares it with the database)."""
    values = ", ".join(f"'{member.value}'" for member in enum_class)
    return CheckConstraint(f"{column} IN ({values})", name=name or f"{column}_known")

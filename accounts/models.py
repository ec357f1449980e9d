from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.extensions import Model
from core.types import UTCDateTime


class User(UserMixin, Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(255))
    # Bumped at logout and password change: every session cookie issued before is refused.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    is_moderator: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the person opened the link sent to their address; until then the
    # account cannot log in (nobody can squat someone else's address).
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped when a login link is used: each link works once.
    link_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A closed account keeps its row, emptied of personal data, because campaigns'
    # updates and disbursements name their author by id; it can never log in again.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The interface language of their last login: notifications are written in it.
    locale: Mapped[str] = mapped_column(String(12), default="", server_default="")

    def get_id(self) -> str:
        # Flask-Login stores this in the session; the version makes old cookies useless.
        return f"{self.id}:{self.session_version}"

    def __repr__(self) -> str:
        return f"<User {self.id}>"

"""Extensions are created unbound here and initialised in create_app()."""

from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import CursorResult, Executable, MetaData
from sqlalchemy.orm import DeclarativeBase
from werkzeug.local import LocalProxy


class Base(DeclarativeBase):
    # Named constraints so Alembic can alter them on every backend, SQLite included.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def client_ip() -> str:
    # ProxyFix (configured by PROXY_FIX_X_FOR) has already rewritten remote_addr when
    # the app sits behind a trusted proxy.
    return request.remote_addr or "unknown"


db = SQLAlchemy(model_class=Base)
# Models subclass `Model`: Flask-SQLAlchemy's db.Model (a bound query property, the
# session's registry), seen by type checkers as the declarative base it extends.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


def current_app_object() -> Flask:
    """The application behind `current_app` (for threads, which have no context)."""
    return cast("LocalProxy[Flask]", current_app)._get_current_object()


def changed(statement: Executable) -> int:
    """Run a guarded UPDATE/DELETE in the session; how many rows it changed."""
    return cast("CursorResult[Any]", db.session.execute(statement)).rowcount


migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=client_ip)
babel = Babel()

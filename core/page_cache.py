"""Rendered public pages, kept for anonymous visitors until the data behind them changes.

A view marked `@cached_page` is served from the cache to a visitor who is not logged in
and has no message waiting (no `_user_id`, no `_flashes` in the session), for a GET or
HEAD, keyed by the full path and query, the interface language and the minute, and
stored with the *page version* it was rendered under: it is served only while that is
still the version. Every transaction that writes a table shown on public pages
(anything but the private tables below) bumps the version when it commits, so the
first anonymous request that starts after a write has committed renders afresh: a
cached total is never older than the last committed write.

The version lives where every process sees it: in Redis when REDIS_URL is set (web
workers, RQ workers and CLI commands share it; read with the page in one MGET), else
in a one-row table of the database (the embedded default, where `flask settle --due`
runs in another process), bumped inside the writing transaction. Pages are stored with
Flask-Caching: Redis when configured, else in the process.

A cached response is stored only if it is a 200 that sets no cookie, so nothing
personal (a CSRF token in a form, a session) is ever shared between visitors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, request, session
from flask_caching import Cache
from redis.exceptions import RedisError
from sqlalchemy import Integer, event, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.extensions import Model, changed, db

log = logging.getLogger(__name__)

cache = Cache()

# Tables no anonymous page shows: writing them changes no public page.
PRIVATE_TABLES = frozenset(
    {
        "api_tokens",
        "campaign_reports",
        "committee_invitations",
        "disputes",
        "email_optouts",
        "heartbeats",
        "job_failures",
        "outbox_messages",
        "page_versions",
        "processed_webhook_events",
        "reconciliation_reports",
        "round_invitations",
        "webhook_deliveries",
        "webhook_endpoints",
    }
)
VERSION_KEY = "page-version"


class PageVersion(Model):
    """The page version where there is no Redis: one row, bumped after public writes."""

    __tablename__ = "page_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


def cached_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a public view whose page anonymous visitors may be served from the cache."""
    view._cached_page = True  # type: ignore[attr-defined]
    return view


class _Versions:
    def __init__(self, app: Flask):
        # With Redis the version is a counter next to the pages (Flask-Caching's
        # `inc`), so one MGET reads both; without it, a row in the database.
        self.in_redis = bool(app.config.get("REDIS_URL"))

    def current(self) -> int:
        if self.in_redis:
            return int(cache.get(VERSION_KEY) or 0)
        return db.session.scalar(db.select(PageVersion.version).where(PageVersion.id == 1)) or 0

    def with_stored(self, key: str) -> tuple[int, Any]:
        """The current version and what is stored under `key`: one round trip."""
        if self.in_redis:
            version, stored = cache.get_many(VERSION_KEY, key)
            return int(version or 0), stored
        return self.current(), cache.get(key)

    def bump_in(self, session_: Session) -> bool:
        """In the writing transaction itself (the database's version: atomic with the
        data). False when the version lives in Redis, bumped after the commit."""
        if self.in_redis:
            return False
        bumped = changed(
            update(PageVersion).where(PageVersion.id == 1).values(version=PageVersion.version + 1)
        )
        if not bumped:  # the migration made the row; an emptied table (tests) has none
            session_.add(PageVersion(id=1, version=1))
            session_.flush()
        return True

    def bump_after(self) -> None:
        cache.cache.inc(VERSION_KEY)


def remembered(name: str, compute: Callable[[], Any]) -> Any:
    """A value computed from public data (a chart's daily totals, say), kept until the
    next write to a public table: `compute()` runs once per page version."""
    try:
        key = f"value:{current_app.extensions['page_versions'].current()}:{name}"
        value = cache.get(key)
        if value is None:
            value = compute()
            cache.set(key, value)
    except RedisError:  # no cache while Redis is down: compute it every time
        return compute()
    return value


def _eligible() -> bool:
    if request.method not in ("GET", "HEAD") or not current_app.config["PAGE_CACHE"]:
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, "_cached_page", False):
        return False
    request.host  # noqa: B018 - the trusted-host check runs before anything is served
    if request.authorization is not None or "remember_token" in request.cookies:
        return False
    return "_user_id" not in session and "_flashes" not in session


def serve_cached() -> Response | None:
    """before_request: the stored page for this anonymous request, if there is one."""
    if not _eligible():
        return None
    from flask_babel import get_locale

    from core.clock import utcnow

    versions: _Versions = current_app.extensions["page_versions"]
    # The minute too: what a page says about time ("3 days left") is at most a
    # minute old, and a test's frozen clock gets pages of its own.
    minute = utcnow().strftime("%Y%m%d%H%M")
    key = f"page:{minute}:{get_locale()}:{request.full_path}"
    try:
        version, stored = versions.with_stored(key)
    except RedisError:  # Redis is down: pages are rendered, not served from it
        log.warning("page cache: Redis unreachable; rendering")
        return None
    # A page is stored with the version it was rendered under: one from before the
    # last public write is not served (and is replaced by the next rendering).
    if stored is not None and stored[0] == version:
        _version, body, status, headers = stored
        response = Response(body, status=status, headers=headers)
        response.headers["X-Page-Cache"] = "hit"
        return response
    g.page_cache_key, g.page_cache_version = key, version
    return None


def store_page(response: Response) -> Response:
    """after_request (registered first, so it runs last): keep what was rendered."""
    key, version = g.pop("page_cache_key", None), g.pop("page_cache_version", None)
    if key is None:
        return response
    if response.status_code != 200 or "Set-Cookie" in response.headers:
        return response
    if response.direct_passthrough or response.is_streamed:
        return response
    headers = [(k, v) for k, v in response.headers.items() if not _per_request(k)]
    try:
        cache.set(key, (version, response.get_data(), response.status_code, headers))
    except RedisError:
        return response
    response.headers["X-Page-Cache"] = "miss"
    return response


def _per_request(header: str) -> bool:
    """Headers that describe this request, not the page (added again on every one)."""
    lowered = header.lower()
    return lowered.startswith("x-ratelimit") or lowered in ("retry-after", "x-page-cache", "date")


def _touched_public(session_: Session, tables) -> None:
    if any(name not in PRIVATE_TABLES for name in tables):
        session_.info["public_write"] = True


def _watch_writes() -> None:
    @event.listens_for(Session, "after_flush")
    def after_flush(session_, _context):
        tables = {
            getattr(obj, "__tablename__", "")
            for obj in (*session_.new, *session_.dirty, *session_.deleted)
        }
        _touched_public(session_, tables)

    @event.listens_for(Session, "do_orm_execute")
    def on_execute(state):
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(state.statement, "table", None)
            _touched_public(state.session, {getattr(table, "name", "")})

    @event.listens_for(Session, "before_commit")
    def before_commit(session_):
        pending = {
            getattr(obj, "__tablename__", "")
            for obj in (*session_.new, *session_.dirty, *session_.deleted)
        }
        _touched_public(session_, pending)
        bumped = (
            session_.info.get("public_write")
            and has_app_context()
            and current_app.config["PAGE_CACHE"]
            and current_app.extensions["page_versions"].bump_in(session_)
        )
        if bumped:
            session_.info.pop("public_write", None)

    @event.listens_for(Session, "after_commit")
    def after_commit(session_):
        wrote = session_.info.pop("public_write", False)
        if wrote and has_app_context() and current_app.config["PAGE_CACHE"]:
            try:
                current_app.extensions["page_versions"].bump_after()
            except RedisError as exc:  # the write stands; pages expire by themselves
                log.warning("page cache: could not bump the page version (%s)", exc)

    @event.listens_for(Session, "after_rollback")
    def after_rollback(session_):
        session_.info.pop("public_write", None)


_watching = False


def init_app(app: Flask) -> None:
    """Before any other after_request hook: the page is stored as finally sent."""
    global _watching
    redis_url = app.config.get("REDIS_URL")
    cache.init_app(
        app,
        config={
            "CACHE_TYPE": "RedisCache" if redis_url else "SimpleCache",
            "CACHE_REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": "counterfund:",
            "CACHE_DEFAULT_TIMEOUT": app.config["PAGE_CACHE_SECONDS"],
            "CACHE_THRESHOLD": 2000,
        },
    )
    app.extensions["page_versions"] = _Versions(app)
    app.before_request(serve_cached)
    app.after_request(store_page)
    if not _watching:  # session events are global: listen once per process
        _watch_writes()
        _watching = True

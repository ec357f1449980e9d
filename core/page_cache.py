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

Most hits never reach Flask: `StoredPages`, a WSGI middleware, serves a stored page to
a GET or HEAD that carries no session or remember cookie and no credentials (so its
language can only come from Accept-Language) for a trusted Host, looking it up under
the very key the view's first rendering stored it with. Flask's request machinery
(session, locale, hooks) costs several times what the lookup does. A public API hit
is counted against the client's API budget here, in Flask-Limiter's own counter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, cast

from flask import Flask, Response, current_app, g, has_app_context, request, session
from flask_caching import Cache
from redis.exceptions import RedisError
from sqlalchemy import Integer, event, update
from sqlalchemy.orm import Mapped, Session, mapped_column
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.http import HTTP_STATUS_CODES, parse_cookie
from werkzeug.wrappers import Request

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
CACHE_KEY_PREFIX = "counterfund:"


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
        self.redis_url = app.config.get("REDIS_URL")
        self.in_redis = bool(self.redis_url)

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

    def read_in(self, pipe, key: str) -> None:
        """Queue the MGET `with_stored` makes on another client's Redis pipeline (the
        same server): the API budget's count goes in the same round trip."""
        pipe.mget(CACHE_KEY_PREFIX + VERSION_KEY, CACHE_KEY_PREFIX + key)

    @staticmethod
    def decoded(values: list) -> tuple[int, Any]:
        version, stored = (cache.cache.serializer.loads(value) for value in values)
        return int(version or 0), stored


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


def _page_key(locale: str, full_path: str) -> str:
    from core.clock import utcnow

    # The minute too: what a page says about time ("3 days left") is at most a
    # minute old, and a test's frozen clock gets pages of its own.
    return f"page:{utcnow().strftime('%Y%m%d%H%M')}:{locale}:{full_path}"


def _current(versions: _Versions, key: str) -> tuple[Any, ...] | None:
    return current_of(key, *versions.with_stored(key))


def current_of(key: str, version: int, stored: Any) -> tuple[Any, ...] | None:
    """What is stored under `key` if it was rendered under the current version: a page
    from before the last public write is not served (the next rendering replaces it)."""
    if stored is not None and stored[0] == version:
        return stored
    g.page_cache_key, g.page_cache_version = key, version
    return None


def serve_cached() -> Response | None:
    """before_request: the stored page for this anonymous request, if there is one."""
    if not _eligible():
        return None
    from flask_babel import get_locale

    key = _page_key(str(get_locale()), request.full_path)
    try:
        stored = _current(current_app.extensions["page_versions"], key)
    except RedisError:  # Redis is down: pages are rendered, not served from it
        log.warning("page cache: Redis unreachable; rendering")
        return None
    if stored is None:
        return None
    _version, body, status, headers = stored
    response = Response(body, status=status, headers=headers)
    response.headers["X-Page-Cache"] = "hit"
    return response


class StoredPages:
    """WSGI middleware: a stored page for an anonymous request, before Flask runs."""

    def __init__(self, app: Flask, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app
        # Remembered per path: routing costs about what the cache lookup does.
        self.cached_view_at = lru_cache(maxsize=4096)(self._routes_to_cached_view)
        self.private_cookies = {
            app.config["SESSION_COOKIE_NAME"],
            app.config.get("REMEMBER_COOKIE_NAME", "remember_token"),
        }

    def __call__(self, environ, start_response):
        found = self._found(environ)
        if found is None:
            return self.wsgi_app(environ, start_response)
        (_version, body, status, headers), limit_headers = found
        start_response(
            f"{status} {HTTP_STATUS_CODES[status]}",
            [*headers, *limit_headers, ("X-Page-Cache", "hit")],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _routes_to_cached_view(self, path: str) -> bool:
        """Whether a GET of `path` reaches a `@cached_page` view."""
        try:
            endpoint, _args = self.app.url_map.bind("localhost").match(path, method="GET")
        except HTTPException:  # not found, a redirect: Flask's to answer
            return False
        return getattr(self.app.view_functions.get(endpoint), "_cached_page", False)

    def _found(self, environ) -> tuple[tuple[Any, ...], list[tuple[str, str]]] | None:
        """The current stored page and the headers to add, or None (Flask's turn)."""
        from core.i18n import INTERFACE_LOCALES
        from core.urls import is_public_api

        if environ["REQUEST_METHOD"] not in ("GET", "HEAD") or not self.app.config["PAGE_CACHE"]:
            return None
        # Credentials, and conditional requests (an ETag's 304 is Flask's to give).
        if {"HTTP_AUTHORIZATION", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE"} & set(environ):
            return None
        cookies = environ.get("HTTP_COOKIE")
        if cookies and not self.private_cookies.isdisjoint(parse_cookie(cookies)):
            return None
        if not self.cached_view_at(
            environ.get("PATH_INFO", "")
        ):  # static files, forms, proofs: no lookup
            return None
        request_ = Request(environ)
        request_.trusted_hosts = self.app.config["TRUSTED_HOSTS"]
        try:
            request_.host  # noqa: B018 - a forged Host is Flask's to refuse (400)
        except SecurityError:
            return None
        # Without a session the language is Accept-Language's (core.i18n.select_locale).
        locale = request_.accept_languages.best_match(INTERFACE_LOCALES) or "en"
        key = _page_key(locale, request_.full_path)
        versions = self.app.extensions["page_versions"]
        with self.app.app_context():
            try:
                if is_public_api(request_.path):
                    # Counted against the client's API budget, or left to Flask.
                    return _api_hit(self.app, request_, versions, key)
                stored = _current(versions, key)
            except RedisError:
                return None
        return None if stored is None else (stored, [])


def _api_hit(app: Flask, request_: Request, versions: _Versions, key: str):
    """(the current stored page, its X-RateLimit headers) for a public API request,
    counted against the client's API budget outside Flask-Limiter's request hooks but
    in its own storage, fixed window and key, so hits and renderings share one budget.
    None when there is no current page, the budget is spent (Flask answers the 429) or
    it cannot be counted here: then Flask serves the request and counts it."""
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter

    from core.api import API_LIMIT_SCOPE
    from core.extensions import limiter

    if not limiter.enabled:
        return _with(_current(versions, key), [])
    items = _parsed(app.config["API_RATE_LIMIT"])
    if len(items) != 1 or not isinstance(limiter.limiter, FixedWindowRateLimiter):
        return None
    [item] = items
    storage, expiry = limiter.storage, item.get_expiry()
    limit_key = item.key_for(request_.remote_addr or "unknown", API_LIMIT_SCOPE)
    one_redis = app.config["RATELIMIT_STORAGE_URI"] == versions.redis_url
    if not (isinstance(storage, RedisStorage) and one_redis):
        stored = _current(versions, key)
        if stored is None:
            return None
        count, reset_at = storage.incr(limit_key, expiry), storage.get_expiry(limit_key)
    else:
        # The page, its version and the count in one round trip to the one Redis.
        page, count, ttl = _read_and_count(storage, versions, key, limit_key, expiry)
        stored = current_of(key, *versions.decoded(page))
        if stored is None:  # Flask renders it, and counts it itself
            storage.incr(limit_key, expiry, amount=-1)
            return None
        reset_at = max(ttl, 0) + time.time()
    if count > item.amount:
        return None
    reset = int(reset_at + 1)  # as Flask-Limiter's headers say it
    return _with(
        stored,
        [
            ("X-RateLimit-Limit", str(item.amount)),
            ("X-RateLimit-Remaining", str(item.amount - count)),
            ("X-RateLimit-Reset", str(reset)),
            ("Retry-After", str(int(reset - time.time()))),
        ],
    )


@lru_cache(maxsize=8)
def _parsed(limit: str) -> list:
    from limits import parse_many

    return parse_many(limit)


def _read_and_count(storage, versions: _Versions, key: str, limit_key: str, expiry: int):
    """[version, page], the window's count after this request and the counter's TTL,
    in one round trip: the storage's own increment script by its hash (a pipeline of
    registered scripts would first ask Redis whether it has them: a second trip)."""
    from redis.exceptions import NoScriptError

    counter = storage.prefixed_key(limit_key)
    script = storage.lua_incr_expire
    connection = cast(Any, storage.get_connection())
    for _attempt in range(2):
        pipe = connection.pipeline(transaction=False)
        versions.read_in(pipe, key)
        pipe.evalsha(script.sha, 1, counter, expiry, 1)
        pipe.ttl(counter)
        try:
            return pipe.execute()
        except NoScriptError:  # a restarted Redis forgot it: load it, go again
            connection.script_load(script.script)
    raise RedisError("the rate limit script could not be loaded")


def _with(stored, headers: list[tuple[str, str]]):
    return None if stored is None else (stored, headers)


def store_page(response: Response) -> Response:
    """after_request (registered first, so it runs last): keep what was rendered."""
    key, version = g.pop("page_cache_key", None), g.pop("page_cache_version", None)
    if key is None:
        return response
    if response.status_code != 200 or "Set-Cookie" in response.headers:
        return response
    if response.direct_passthrough or response.is_streamed:
        return response
    # The page depends on who asks (logged in or not) and in which language: say so
    # to shared caches on the way, on this response and on every hit.
    response.vary.update(("Cookie", "Accept-Language"))
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

    # SQLAlchemy sends the commit and rollback events for savepoints too. Releasing one
    # commits nothing, and rolling one back leaves the transaction's earlier writes in
    # place: the version moves, and the mark is cleared, only with the transaction.
    @event.listens_for(Session, "before_commit")
    def before_commit(session_):
        if session_.in_nested_transaction():
            return
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
        if session_.in_nested_transaction():
            return
        wrote = session_.info.pop("public_write", False)
        if wrote and has_app_context() and current_app.config["PAGE_CACHE"]:
            try:
                current_app.extensions["page_versions"].bump_after()
            except RedisError as exc:  # the write stands; pages expire by themselves
                log.warning("page cache: could not bump the page version (%s)", exc)

    @event.listens_for(Session, "after_rollback")
    def after_rollback(session_):
        if not session_.in_nested_transaction():
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
            "CACHE_KEY_PREFIX": CACHE_KEY_PREFIX,
            "CACHE_DEFAULT_TIMEOUT": app.config["PAGE_CACHE_SECONDS"],
            "CACHE_THRESHOLD": 2000,
        },
    )
    app.extensions["page_versions"] = _Versions(app)
    # Flask's documented way to wrap the WSGI app (typeshed calls it a method). ProxyFix,
    # when configured, wraps this (app.py), so the Host and scheme are the client's.
    app.wsgi_app = StoredPages(app, app.wsgi_app)  # type: ignore[method-assign]
    app.before_request(serve_cached)
    app.after_request(store_page)
    if not _watching:  # session events are global: listen once per process
        _watch_writes()
        _watching = True

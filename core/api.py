"""What every JSON endpoint under /api/v1 shares.

Public endpoints (every GET outside /api/v1/organizer/) are open to anyone, from any
origin: CORS allows every origin (auditors' browser tools call them), responses carry
an ETag and `Cache-Control: public`, a request whose `If-None-Match` names the current
ETag gets 304 and no body. Organizer endpoints (personal API tokens) are never cached
and send no CORS headers. Errors on both are `application/problem+json` (RFC 9457).
The API has a rate limit (`API_RATE_LIMIT` per client, one budget for all its
routes), announced in `X-RateLimit-*` headers (Flask-Limiter)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Response, abort, current_app, request
from werkzeug.routing import IntegerConverter

from core.urls import is_api, is_public_api, public_url_for, query_int

PUBLIC_MAX_AGE = 30  # seconds a shared cache may keep a public answer
EXPOSED = "ETag, Link, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"


def problem(status: int, title: str, detail: str | None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return Response(json.dumps(body), status, mimetype="application/problem+json")


def after_api_request(response: Response) -> Response:
    if not is_api(request.path):
        return response
    if not is_public_api(request.path):
        response.headers["Cache-Control"] = "no-store"
        response.vary.add("Authorization")
        return response
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = EXPOSED
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "If-None-Match"
        response.headers["Access-Control-Max-Age"] = "86400"
        return response
    if request.method in ("GET", "HEAD") and response.status_code == 200:
        response.headers.setdefault("Cache-Control", f"public, max-age={PUBLIC_MAX_AGE}")
        if not response.is_streamed:
            response.add_etag()
            response.make_conditional(request)
    return response


# ---- Cursor pagination ----------------------------------------------------------------


def encode_cursor(*key: Any) -> str:
    """An opaque cursor: the sort key of the last item a page held."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(name: str = "cursor") -> list | None:
    raw = request.args.get(name) or ""
    if not raw:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        abort(400, description=f"{name} is not a cursor this API gave")
    if not isinstance(key, list) or not all(isinstance(k, int | str) for k in key):
        abort(400, description=f"{name} is not a cursor this API gave")
    return key


def api_rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


def per_page() -> int:
    return query_int("per_page", default=current_app.config["PAGE_SIZE"], minimum=1, maximum=100)


def newest_first(query: Any, id_column: Any, size: int) -> tuple[list, str | None]:
    """One page of `query` ordered by id, newest first, after the cursor's id: items
    added while a client pages through land before its cursor, so every item is seen
    once. Returns the items and the next page's cursor (None on the last page)."""
    from core.extensions import db

    cursor = decode_cursor()
    if cursor is not None:
        if len(cursor) != 1 or not isinstance(cursor[0], int):
            abort(400, description="cursor is not a cursor this API gave")
        query = query.where(id_column < cursor[0])
    rows = list(db.session.scalars(query.order_by(id_column.desc()).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


def next_link(next_cursor: str | None) -> str | None:
    """The absolute URL of the next page (on PUBLIC_URL), or None."""
    if next_cursor is None or request.endpoint is None:
        return None
    args = {**(request.view_args or {}), **request.args.to_dict(), "cursor": next_cursor}
    return public_url_for(request.endpoint, **args)


API_LIMIT_SCOPE = "api"


def limit_api(blueprint) -> None:
    """The API rate limit on every route of an API blueprint: one budget per client
    for the whole API (page-cache hits are counted in the same one, core.page_cache)."""
    from core.extensions import limiter

    limiter.shared_limit(api_rate_limit, scope=API_LIMIT_SCOPE)(blueprint)


class RowIdConverter(IntegerConverter):
    """`<int:…>` in every route: row ids are 32-bit integers in the database, so a
    larger number cannot name a row and is a 404 (PostgreSQL refuses it with a 500)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)

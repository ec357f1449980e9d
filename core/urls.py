from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import abort, current_app, request


def safe_next(target: str | None, fallback: str) -> str:
    """Only same-site relative paths: never an open redirect to another host."""
    if not target:
        return fallback
    # Control characters (raw or percent-encoded) would break the Location header or
    # smuggle one: such a target is not a page of ours.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target) or re.search(
        r"%(0[0-9a-f]|1[0-9a-f]|7f)", target, re.IGNORECASE
    ):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target:
        return fallback
    return target


def public_request_context():
    """A request context on the public base URL, for CLI commands and jobs that build
    absolute links (emails) outside any HTTP request."""
    return current_app.test_request_context("/", base_url=current_app.config["PUBLIC_URL"])


API_PREFIX = "/api/v1/"
ORGANIZER_PREFIX = "/api/v1/organizer/"


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def is_public_api(path: str) -> bool:
    """Open to anyone, from any origin: every API path but the organizers' (tokens)."""
    return is_api(path) and not path.startswith(ORGANIZER_PREFIX)


def query_int(name: str, *, default: int | None = None, minimum: int = 0, maximum: int) -> int:
    """A whole-number query parameter, or a clear 400: ASCII digits only (Python's int()
    also reads "٣" and refuses "²" with an exception), bounded before conversion."""
    raw = request.args.get(name)
    refusal = f"{name} must be a whole number, at least {minimum} and at most {maximum}"
    # A page's filter form sends empty fields; an API client means something by `x=`.
    if is_api(request.path) and (raw == "" or len(request.args.getlist(name)) > 1):
        abort(400, description=refusal)
    if raw is None or raw == "":
        if default is None:
            abort(400, description=f"{name} is required")
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(maximum)):
        abort(400, description=refusal)
    value = int(raw)
    if not minimum <= value <= maximum:
        abort(400, description=refusal)
    return value


def public_url_for(endpoint: str, **values) -> str:
    """An absolute URL on the configured PUBLIC_URL, whatever Host the request carried
    (a forged Host header must never reach an email, a feed or the API)."""
    parts = urlsplit(current_app.config["PUBLIC_URL"])
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme
    )
    anchor = values.pop("_anchor", None)
    url = adapter.build(endpoint, values, force_external=True)
    return f"{url}#{anchor}" if anchor else url

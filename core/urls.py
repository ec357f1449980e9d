from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def safe_next(target: str | None, fallback: str) -> str:
    """Only same-site relative paths: never an open redirect to another host."""
    if not target:
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

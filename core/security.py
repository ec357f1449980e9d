"""Security headers on every response. No third-party origins anywhere by default."""

from __future__ import annotations

from flask import Flask, Response, current_app


def content_security_policy(
    extra_script: str = "",
    extra_frame: str = "",
    extra_connect: str = "",
    frame_ancestors: str = "'none'",
) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self'{extra_script}",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self'{extra_connect}",
            f"frame-src{extra_frame}" if extra_frame else "frame-src 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy())
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if "frame-ancestors *" not in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "DENY")  # the embeddable widget is the exception
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault(
        "Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"
    )
    if current_app.config.get("PRODUCTION"):
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    return response


def init_security(app: Flask) -> None:
    app.after_request(add_security_headers)

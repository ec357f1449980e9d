from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, SecurityError

from core.extensions import db
from core.urls import public_url_for

bp = Blueprint("core", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness for load balancers; with ?deep=1, every check the feature packages
    registered (the job queue, the scheduler, the last sweep, overdue campaigns)."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # any failure to reach the database means unhealthy
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    if request.args.get("deep") != "1":
        return jsonify(status="ok", database="ok")
    healthy, checks = run_health_checks()
    body = {"status": "ok" if healthy else "degraded", "database": "ok", **checks}
    return jsonify(body), (200 if healthy else 503)


def run_health_checks() -> tuple[bool, dict]:
    healthy, checks = True, {}
    for name, check in current_app.extensions.get("health_checks", {}).items():
        ok, checks[name] = check()
        healthy = healthy and ok
    return healthy, checks


@bp.post("/language")
def choose_language():
    """The language switcher: remembered in the session, for this browser only."""
    from core.i18n import INTERFACE_LOCALES
    from core.urls import safe_next

    choice = request.form.get("locale", "")
    if choice in INTERFACE_LOCALES:
        session["locale"] = choice
    return redirect(safe_next(request.form.get("next"), url_for("campaigns.home")))


# Private pages stay out of search engines: guest manage links are bearer tokens.
ROBOTS_DISALLOW = ("/pledge/", "/pledges", "/account", "/dashboard", "/moderation", "/login")


@bp.get("/robots.txt")
def robots():
    lines = ["User-agent: *", *(f"Disallow: {path}" for path in ROBOTS_DISALLOW)]
    lines.append(f"Sitemap: {public_url_for('campaigns.sitemap')}")
    return current_app.response_class("\n".join(lines) + "\n", mimetype="text/plain")


@bp.get("/privacy")
def privacy():
    return render_template("core/privacy.html")


def handle_http_error(error: HTTPException):
    if isinstance(error, SecurityError):
        # A Host outside TRUSTED_HOSTS: no page of ours (its links) is built for it.
        return Response("Unknown host.\n", 400, mimetype="text/plain")
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return jsonify(error=error.description, status=error.code), error.code
    titles = {
        400: _("That request was not understood"),
        403: _("You are not allowed to do that"),
        404: _("Page not found"),
        413: _("That upload is too large"),
        429: _("Too many attempts"),
    }
    return (
        render_template(
            "core/error.html",
            code=error.code,
            title=titles.get(error.code or 500, error.name),
            # Only descriptions we wrote ourselves; Werkzeug's defaults add nothing.
            description=error.description if error.description != type(error).description else None,
        ),
        error.code,
    )

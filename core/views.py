from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
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

from core import optouts
from core.api import problem
from core.extensions import csrf, db
from core.signed import LinkError
from core.urls import is_api, public_url_for

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
@csrf.exempt
def choose_language():
    """The language switcher: remembered in the session, for this browser only. No
    CSRF token: the form is on every public page, and a token would make each page
    personal (uncacheable, and a session cookie for every visitor); a forged post
    can only change the language someone reads in."""
    from core.i18n import INTERFACE_LOCALES
    from core.urls import safe_next

    choice = request.form.get("locale", "")
    if choice in INTERFACE_LOCALES:
        session["locale"] = choice
    return redirect(safe_next(request.form.get("next"), url_for("campaigns.home")))


# Private pages stay out of search engines: guest manage links are bearer tokens.
ROBOTS_DISALLOW = (
    "/pledge/",
    "/pledges",
    "/account",
    "/dashboard",
    "/moderation",
    "/login",
    "/unsubscribe/",
)


@bp.get("/robots.txt")
def robots():
    lines = ["User-agent: *", *(f"Disallow: {path}" for path in ROBOTS_DISALLOW)]
    lines.append(f"Sitemap: {public_url_for('campaigns.sitemap')}")
    return current_app.response_class("\n".join(lines) + "\n", mimetype="text/plain")


@bp.get("/privacy")
def privacy():
    return render_template("core/privacy.html")


@bp.get("/how-it-works")
def how_it_works():
    return render_template("core/how_it_works.html")


@bp.get("/terms")
def terms():
    return render_template("core/terms.html")


@bp.get("/unsubscribe/<token>")
def unsubscribe(token: str):
    """The link in an email one may stop: a page with a button. Opening it changes
    nothing (mail scanners open links); the button, or the mail client's one-click
    POST, does."""
    try:
        _key, topic, _scope = optouts.read(token)
    except LinkError:
        abort(404)
    return render_template("core/unsubscribe.html", what=optouts.TOPICS[topic], done=False)


@bp.post("/unsubscribe/<token>")
@csrf.exempt  # RFC 8058: the mail client posts on its own; the signed token is the proof
def unsubscribe_now(token: str):
    try:
        key, topic, scope = optouts.read(token)
    except LinkError:
        abort(404)
    optouts.opt_out(key, topic, scope)
    db.session.commit()
    return render_template("core/unsubscribe.html", what=optouts.TOPICS[topic], done=True)


def handle_http_error(error: HTTPException):
    if isinstance(error, SecurityError):
        # A Host outside TRUSTED_HOSTS: no page of ours (its links) is built for it.
        return Response("Unknown host.\n", 400, mimetype="text/plain")
    if is_api(request.path) or request.accept_mimetypes.best == "application/json":
        detail = error.description if error.description != type(error).description else None
        response = problem(error.code or 500, error.name, detail)
        # What the error says besides its body: Allow on a 405, Retry-After on a 429…
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response
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

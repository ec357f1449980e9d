from __future__ import annotations

import json

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from accounts import services
from accounts.forms import (
    CloseAccountForm,
    EmailChangeForm,
    LoginForm,
    LoginLinkForm,
    LogoutForm,
    PasswordChangeForm,
    ProfileForm,
    RegisterForm,
)
from accounts.sessions import allow_password_reset, mark_login, password_reset_allowed
from core.extensions import db, limiter
from core.signed import LinkError
from core.urls import safe_next
from core.work import flash_transaction, form_transaction

bp = Blueprint("accounts", __name__)


def _login_account_key() -> str:
    """The account-wide ceiling: failures per account, whatever client sends them."""
    return "login-account:" + services.identifier_key(request.form.get("email") or "")


def _login_pair_key() -> str:
    """The tight limit counts failures per account *and* client, so an attacker who
    hammers an account locks out only themselves, not its owner."""
    account = services.identifier_key(request.form.get("email") or "")
    return f"login-pair:{account}:{get_remote_address()}"


def _start_session(user) -> None:
    # A fresh session at login: nothing from before (CSRF token included) carries over.
    session.clear()
    login_user(user)
    mark_login()
    session.permanent = False


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["REGISTER_RATE_LIMIT"], methods=["POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("accounts.account"))
    form = RegisterForm()
    if form.validate_on_submit():
        with form_transaction(form) as work:
            services.register_user(form.email.data, form.display_name.data, form.password.data)
        if work.committed:
            # The same answer whether or not the address had an account already.
            return render_template("accounts/check_email.html", purpose="register")
    return render_template("accounts/register.html", form=form), 422 if form.errors else 200


@bp.get("/register/confirm/<token>")
def confirm_email(token: str):
    try:
        user = services.confirm_email(token)
    except LinkError as exc:
        flash(_link_problem(exc), "error")
        return redirect(url_for("accounts.login"))
    if user is None:
        flash(_("This address is confirmed already: log in."), "info")
        return redirect(url_for("accounts.login"))
    db.session.commit()
    _start_session(user)
    flash(_("Welcome to Counterfund, %(name)s.", name=user.display_name), "success")
    return redirect(url_for("campaigns.dashboard"))


def _link_problem(exc: LinkError) -> str:
    if exc.expired:
        return _("This link has expired. Ask for a new one.")
    return _("This link is not valid. Ask for a new one.")


@bp.route("/login/link", methods=["GET", "POST"])
@limiter.limit("5 per hour", methods=["POST"])
@limiter.limit("5 per hour", methods=["POST"], key_func=_login_account_key)
def login_link():
    """Log in from a link sent by email: for a forgotten password, and for the owner
    of an account whose login limit an attacker tripped."""
    form = LoginLinkForm()
    if form.validate_on_submit():
        services.send_login_link(form.email.data)
        db.session.commit()
        return render_template("accounts/check_email.html", purpose="login")
    return render_template("accounts/login_link.html", form=form), (422 if form.errors else 200)


@bp.get("/login/link/<token>")
def login_with_link(token: str):
    try:
        user = services.use_login_link(token)
    except LinkError as exc:
        flash(_link_problem(exc), "error")
        return redirect(url_for("accounts.login_link"))
    if user is None:
        flash(_("This link was used already. Ask for a new one."), "error")
        return redirect(url_for("accounts.login_link"))
    db.session.commit()
    _start_session(user)
    allow_password_reset()
    flash(
        _(
            "You are logged in. If you forgot your password, choose a new one below in the "
            "next 15 minutes: the old one is not needed."
        ),
        "info",
    )
    return redirect(url_for("accounts.account") + "#password")


@bp.errorhandler(429)
def too_many_attempts(error):
    """Limits on this blueprint's forms: say what to do instead of a bare error."""
    return render_template("accounts/too_many.html"), 429


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_IP"], methods=["POST"])
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT_ACCOUNT"],
    methods=["POST"],
    key_func=_login_pair_key,
    deduct_when=lambda response: response.status_code != 302,
)
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT_ACCOUNT_CEILING"],
    methods=["POST"],
    key_func=_login_account_key,
    deduct_when=lambda response: response.status_code != 302,
)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("accounts.account"))
    form = LoginForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data)
        if user is not None and user.email_verified_at is None:
            # Only after the right password: says nothing about other addresses.
            services.send_confirmation(user)
            db.session.commit()
            form.email.errors.append(
                _("Confirm your address first: we have emailed you a new link.")
            )
        elif user is not None:
            services.note_login(user)
            db.session.commit()
            _start_session(user)
            return redirect(safe_next(request.args.get("next"), url_for("campaigns.dashboard")))
        form.password.errors.append(_("That email address and password do not match."))
    status = 401 if form.errors else 200
    return render_template("accounts/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    if LogoutForm().validate_on_submit():
        services.end_all_sessions(current_user._get_current_object())
        db.session.commit()
        logout_user()
        session.clear()
        flash(_("You are logged out."), "info")
    return redirect(url_for("campaigns.home"))


def _account_forms(resetting: bool):
    """The account page's forms, each reading its own prefixed fields of the request.
    After an emailed login link (`resetting`) none asks for the current password: the
    link proved the mailbox."""
    forms = (
        ProfileForm(prefix="profile", obj=current_user),
        PasswordChangeForm(prefix="password"),
        EmailChangeForm(prefix="email"),
        CloseAccountForm(prefix="close"),
    )
    if resetting:
        for form in forms[1:]:
            del form.current_password
    return forms


def _account_page(resetting: bool, profile, password, email, closing):
    status = 422 if any(form.errors for form in (profile, password, email, closing)) else 200
    return render_template(
        "accounts/account.html",
        profile=profile,
        password=password,
        email=email,
        closing=closing,
        resetting=resetting,
    ), status


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    resetting = password_reset_allowed()
    profile, password, email, closing = _account_forms(resetting)
    user = current_user._get_current_object()
    if profile.submit.data and profile.validate_on_submit():
        current_user.display_name = profile.display_name.data.strip()
        db.session.commit()
        flash(_("Saved."), "success")
        return redirect(url_for("accounts.account"))
    if password.submit.data and password.validate_on_submit():
        with form_transaction(password) as work:
            services.change_password(
                user,
                None if resetting else password.current_password.data,
                password.new_password.data,
            )
        if work.committed:
            _start_session(user)
            flash(_("Password changed. Other devices have been logged out."), "success")
            return redirect(url_for("accounts.account"))
    if email.submit.data and email.validate_on_submit():
        with form_transaction(email) as work:
            address = services.request_email_change(
                user, email.email.data, None if resetting else email.current_password.data
            )
        if work.committed:
            # The same answer whether or not the address has an account.
            flash(
                _(
                    "We have emailed a link to %(email)s. Your address changes when you open "
                    "it; until then, nothing changes.",
                    email=address,
                ),
                "info",
            )
            return redirect(url_for("accounts.account"))
    return _account_page(resetting, profile, password, email, closing)


@bp.get("/account/email/<token>")
def confirm_email_change(token: str):
    """The link sent to a new address: opening it moves the account to that address."""
    try:
        with flash_transaction() as work:
            user = services.confirm_email_change(token)
    except LinkError as exc:
        flash(_link_problem(exc), "error")
        return redirect(url_for("accounts.account"))
    if work.committed and user is None:
        flash(_("This link was used already, or your address changed since."), "error")
    elif work.committed and user is not None:
        flash(_("Your account now uses %(email)s.", email=user.email), "success")
    return redirect(url_for("accounts.account"))


@bp.post("/account/close")
@login_required
def close_account():
    resetting = password_reset_allowed()
    profile, password, email, closing = _account_forms(resetting)
    if closing.validate_on_submit():
        with form_transaction(closing, "confirm") as work:
            services.close_account(
                current_user._get_current_object(),
                None if resetting else closing.current_password.data,
            )
        if work.committed:
            logout_user()
            session.clear()
            flash(_("Your account is closed. Thank you for your solidarity."), "info")
            return redirect(url_for("campaigns.home"))
    return _account_page(resetting, profile, password, email, closing)


@bp.get("/account/export.json")
@login_required
def export_account():
    """Everything held about the person, as a download (GDPR articles 15 and 20)."""
    data = services.export_account(current_user._get_current_object())
    response = current_app.response_class(
        json.dumps(data, ensure_ascii=False, indent=2), mimetype="application/json"
    )
    response.headers["Content-Disposition"] = 'attachment; filename="counterfund-my-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response

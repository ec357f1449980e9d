"""Accounts: users, registration, login, sessions, roles."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Login (session users, lifetimes), the account pages and the `users` CLI."""
    from flask_login import current_user

    from accounts.cli import bp as users_cli
    from accounts.forms import LogoutForm
    from accounts.services import load_session_user
    from accounts.sessions import enforce_session_lifetime
    from accounts.views import bp as accounts_bp
    from core.extensions import login_manager

    login_manager.login_view = "accounts.login"
    login_manager.login_message = None
    login_manager.user_loader(load_session_user)
    app.before_request(enforce_session_lifetime)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(users_cli)

    @app.context_processor
    def logout_form():
        # formdata=None: never parse the request body here (an oversized one would
        # raise again while its 413 page renders).
        # Outside a request (an email composed by a job or the CLI) there is no user.
        signed_in = getattr(current_user, "is_authenticated", False)
        form = LogoutForm(formdata=None) if signed_in else None
        return {"logout_form": form}

"""Payments: pledges, payment backends (simulated, Stripe), webhooks, settlement."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The payment backend, the job runner and its sweep, settlement at each launched
    campaign's deadline, the pledge pages, webhooks, the CLI and template helpers."""
    from accounts.signals import account_closing, account_exporting
    from campaigns import signals
    from campaigns.dashboard import register as register_dashboard_items
    from core import heartbeat  # noqa: F401 - registers the heartbeat model
    from core.jobs import init_jobs, start_background_jobs
    from payments import dashboard, jobs, notifications, personal_data, reconcile  # noqa: F401
    from payments.api import bp as payments_api
    from payments.backends import init_backend
    from payments.chart import pledge_chart
    from payments.cli import bp as demo_cli
    from payments.cli import settle_cli
    from payments.health import settlement_health
    from payments.services import period_charges, recent_supporters
    from payments.views import bp as payments_bp
    from payments.webhooks import bp as webhooks_bp

    init_backend(app)
    init_jobs(app, sweep=jobs.sweep)
    app.extensions.setdefault("health_checks", {})["settlement"] = settlement_health
    signals.campaign_launched.connect(jobs.schedule_deadline)
    signals.campaign_cancelled.connect(jobs.release_on_cancel)
    signals.update_posted.connect(notifications.on_update_posted)
    register_dashboard_items(app, dashboard.items)
    notifications.register_topics()
    account_closing.connect(personal_data.close)
    account_exporting.connect(personal_data.export)
    if app.config["JOB_RUNNER"] == "thread":
        # The embedded scheduler thread starts with the first request, so CLI commands
        # (migrations, the demo loader) never start one.
        app.before_request(lambda: start_background_jobs(app))
    for blueprint in (demo_cli, payments_bp, payments_api, webhooks_bp, settle_cli):
        app.register_blueprint(blueprint)
    app.jinja_env.globals["recent_supporters"] = recent_supporters
    app.jinja_env.globals["period_charges"] = period_charges
    app.jinja_env.globals["pledge_chart"] = pledge_chart

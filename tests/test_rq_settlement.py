"""Settlement through real RQ workers on Redis and PostgreSQL: duplicates and crashes.

Workers are separate processes (`flask --app app worker --burst`), as in production.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, insert, select, update

from campaigns.models import Campaign
from core.extensions import db
from ledger.models import LedgerPosting, LedgerTransaction
from payments.jobs import decide_campaign
from payments.models import Pledge
from tests.factories import make_campaign

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def _bulk_pledges(app, campaign_id: int, count: int) -> list[str]:
    """`count` active 4242 pledges, their cards saved at the simulated provider."""
    backend = app.extensions["payment_backend"]
    rows, refs = [], []
    for n in range(count):
        ref = f"bulk-{campaign_id}-{n:05d}"
        customer = backend.create_customer(ref)
        setup = backend.start_setup(ref, customer)
        card = backend.provider.confirm_setup(setup.setup_id, "4242424242424242")
        amount = 100 * (1 + n % 20)
        rows.append(
            {
                "public_id": ref,
                "submission_key": ref,
                "campaign_id": campaign_id,
                "guest_email": f"s{n}@example.org",
                "amount": amount,
                "currency": "EUR",
                "status": "active",
                "visibility": "anonymous",
                "backend": "simulated",
                "provider_customer_id": customer,
                "provider_setup_id": setup.setup_id,
                "provider_payment_method_id": card.payment_method_id,
                "card_last4": "4242",
            }
        )
        refs.append(ref)
    with app.app_context():
        db.session.execute(insert(Pledge), rows)
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(pledged_amount=sum(r["amount"] for r in rows), backer_count=count)
        )
        db.session.commit()
    return refs


def _worker_env(app, redis_url: str, queue: str, **extra) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url,
        "JOB_RUNNER": "rq",
        "JOB_QUEUE": queue,
        "SIMULATED_PROVIDER_DB": app.config["SIMULATED_PROVIDER_DB"],
        "OUTBOX_FOLDER": app.config["OUTBOX_FOLDER"],
        "COUNTERFUND_INSTANCE": str(Path(app.config["UPLOAD_FOLDER"]).parent / "worker"),
        "CHARGE_LEASE_SECONDS": "0",
        "SETTLEMENT_BATCH_SIZE": "20",
        "SETTLEMENT_CONCURRENCY": "8",
        "SETTLEMENT_RATE_LIMIT": "100000",
        "SWEEP_INTERVAL": "3600",
        "PYTHONPATH": str(ROOT),
        **{k: str(v) for k, v in extra.items()},
    }


def _start_worker(env: dict) -> subprocess.Popen:
    log = Path(env["COUNTERFUND_INSTANCE"]).parent / "workers.log"
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )


def _finish(worker: subprocess.Popen, env: dict, timeout: float = 300) -> None:
    worker.wait(timeout=timeout)
    log = Path(env["COUNTERFUND_INSTANCE"]).parent / "workers.log"
    assert worker.returncode == 0, log.read_text()[-3000:]


def _enqueue_decision(redis_url: str, queue: str, campaign_id: int, n: int) -> None:
    connection = Redis.from_url(redis_url)
    Queue(queue, connection=connection).enqueue(
        decide_campaign, campaign_id, job_id=f"decide-{campaign_id}-{n}"
    )
    connection.close()


def _ledger_charged(campaign_id: int) -> int:
    """What the ledger says the campaign's charges brought in (in an app context)."""
    return db.session.scalar(
        select(func.coalesce(func.sum(LedgerPosting.amount), 0))
        .join(LedgerTransaction)
        .where(
            LedgerTransaction.kind == "pledge_charge",
            LedgerPosting.account == f"campaign:{campaign_id}",
        )
    )


def _check_exactly_once(app, campaign_id: int, refs: list[str]) -> None:
    provider = app.extensions["payment_backend"].provider
    per_pledge = {ref: len(provider.charges_for(ref)) for ref in refs}
    assert max(per_pledge.values()) == 1, "a pledge was charged twice"
    with app.app_context():
        states = dict(
            db.session.execute(
                select(Pledge.status, func.count(Pledge.id))
                .where(Pledge.campaign_id == campaign_id)
                .group_by(Pledge.status)
            ).all()
        )
        ledger_total = _ledger_charged(campaign_id)
        campaign = db.session.get(Campaign, campaign_id)
    assert states == {"charged": len(refs)}, states
    assert min(per_pledge.values()) == 1
    charged_at_provider = sum(row["amount"] for ref in refs for row in provider.charges_for(ref))
    assert ledger_total == charged_at_provider == campaign.collected_amount
    assert campaign.status == "settled"


def test_three_workers_running_the_same_job_charge_each_pledge_once(make_app, redis_url):
    app = make_app()
    cid = make_campaign(app, goal=10)
    refs = _bulk_pledges(app, cid, 300)
    _deadline_passed(app, cid)
    queue = f"test-{random.randrange(1 << 30)}"
    for n in range(3):
        _enqueue_decision(redis_url, queue, cid, n)
    env = _worker_env(app, redis_url, queue)
    workers = [_start_worker(env) for _ in range(3)]
    for worker in workers:
        _finish(worker, env)
    _assert_no_failed_jobs(app)
    _check_exactly_once(app, cid, refs)


def test_sigkilled_workers_never_double_charge(make_app, redis_url):
    app = make_app()
    cid = make_campaign(app, goal=10)
    refs = _bulk_pledges(app, cid, 500)
    _deadline_passed(app, cid)
    queue = f"test-{random.randrange(1 << 30)}"
    rng = random.Random(1234)
    # Slow enough that kills land while charges are in flight: 500 pledges at
    # 40 ms a call, 4 at a time, is about 5 s of charging.
    slow = {"SIMULATED_LATENCY_MS": 40, "SETTLEMENT_CONCURRENCY": 4}
    kills = rounds = 0
    while kills < 10 and rounds < 60:
        rounds += 1
        with app.app_context():
            open_before = db.session.scalar(
                select(func.count(Pledge.id)).where(
                    Pledge.campaign_id == cid, Pledge.status != "charged"
                )
            )
        _enqueue_decision(redis_url, queue, cid, rounds)
        if rounds % 2:
            # Killed from outside at a random moment (claiming, charging, recording).
            worker = _start_worker(_worker_env(app, redis_url, queue, **slow))
            time.sleep(rng.uniform(1.2, 2.5))
            _kill_tree(worker.pid)  # RQ's worker and the work horse it forked
            worker.wait(timeout=30)
        else:
            # Kills itself right after a provider call, before recording it.
            worker = _start_worker(
                _worker_env(app, redis_url, queue, **slow, COUNTERFUND_FAULT_KILL_RATE="0.06")
            )
            worker.wait(timeout=120)
        if worker.returncode == -signal.SIGKILL and open_before:
            kills += 1  # only kills that interrupted unfinished settlement count
    assert kills >= 10, f"only {kills} kills in {rounds} rounds"
    # Restart cleanly until the work is done.
    for n in range(5):
        _enqueue_decision(redis_url, queue, cid, 1000 + n)
        env = _worker_env(app, redis_url, queue)
        _finish(_start_worker(env), env)
        with app.app_context():
            if db.session.get(Campaign, cid).status == "settled":
                break
    _check_exactly_once(app, cid, refs)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started, the way a crash takes them all."""
    for victim in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _assert_no_failed_jobs(app) -> None:
    from core.jobs import JobFailure

    with app.app_context():
        failures = db.session.scalars(select(JobFailure.error)).all()
    assert failures == [], failures[0][-3000:]


def _deadline_passed(app, campaign_id: int) -> None:
    """Workers read the real clock, so the deadline itself moves into the past."""
    from datetime import UTC, datetime, timedelta

    with app.app_context():
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(deadline=datetime.now(UTC) - timedelta(minutes=1))
        )
        db.session.commit()


def test_sigkilled_workers_never_charge_a_period_twice(make_app, redis_url):
    """A weekly campaign whose first period just ended, 200 standing pledges, workers
    killed while the period's charges are in flight: each standing pledge is charged
    exactly once for the period, at the provider and in the ledger."""
    from datetime import UTC, datetime, timedelta

    from campaigns.periods import Period, Recurrence
    from payments.jobs import advance_recurring

    app = make_app()
    cid = make_campaign(app, goal=10, model="flexible")
    _bulk_pledges(app, cid, 200)
    launched = datetime.now(UTC) - timedelta(weeks=1, minutes=1)
    with app.app_context():
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == cid)
            .values(launched_at=launched, deadline=launched + timedelta(weeks=4))
        )
        db.session.execute(
            update(Pledge)
            .where(Pledge.campaign_id == cid)
            .values(recurring=True, activated_at=launched + timedelta(hours=1))
        )
        db.session.add(Recurrence(campaign_id=cid, interval="week", max_periods=4))
        db.session.commit()
    queue = f"test-{random.randrange(1 << 30)}"
    connection = Redis.from_url(redis_url)
    jobs = Queue(queue, connection=connection)
    slow = {"SIMULATED_LATENCY_MS": 40, "SETTLEMENT_CONCURRENCY": 4}
    rng = random.Random(77)
    kills = rounds = 0
    while kills < 6 and rounds < 40:
        rounds += 1
        jobs.enqueue(advance_recurring, cid, job_id=f"advance-{cid}-{rounds}")
        if rounds % 2:
            worker = _start_worker(_worker_env(app, redis_url, queue, **slow))
            time.sleep(rng.uniform(1.0, 2.0))
            _kill_tree(worker.pid)
            worker.wait(timeout=30)
        else:
            worker = _start_worker(
                _worker_env(app, redis_url, queue, **slow, COUNTERFUND_FAULT_KILL_RATE="0.06")
            )
            worker.wait(timeout=120)
        if worker.returncode == -signal.SIGKILL:
            kills += 1
    assert kills >= 6, f"only {kills} kills in {rounds} rounds"
    for n in range(5):
        jobs.enqueue(advance_recurring, cid, job_id=f"advance-{cid}-final-{n}")
        env = _worker_env(app, redis_url, queue)
        _finish(_start_worker(env), env)
        with app.app_context():
            status = db.session.scalar(
                select(Period.status).where(Period.campaign_id == cid, Period.number == 1)
            )
        if status == "charged":
            break
    connection.close()
    provider = app.extensions["payment_backend"].provider
    with app.app_context():
        charges = db.session.execute(
            select(Pledge.parent_id, Pledge.public_id, Pledge.status, Pledge.charge_key).where(
                Pledge.campaign_id == cid, Pledge.period == 1
            )
        ).all()
        collected = db.session.scalar(
            select(Period.collected_amount).where(Period.campaign_id == cid, Period.number == 1)
        )
        ledger_total = _ledger_charged(cid)
    assert len(charges) == 200 and len({c.parent_id for c in charges}) == 200
    assert {c.status for c in charges} == {"charged"}
    assert all(c.charge_key.startswith(f"pledge-{c.parent_id}-period-1-") for c in charges)
    per_charge = {c.public_id: len(provider.charges_for(c.public_id)) for c in charges}
    assert set(per_charge.values()) == {1}, "a standing pledge was charged twice for a period"
    at_provider = sum(row["amount"] for c in charges for row in provider.charges_for(c.public_id))
    assert at_provider == ledger_total == collected

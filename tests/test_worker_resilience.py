"""Settlement never depends on one queued job surviving: real `flask worker` processes
on PostgreSQL and a Redis of the test's own that loses everything, workers killed while
they sweep or hold RQ's scheduler lock. In each case a campaign whose deadline passes
afterwards is decided and settled within a few sweep intervals, with no restart by hand."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker
from rq.exceptions import SchedulerNotFound
from rq.scheduler import RQScheduler
from sqlalchemy import select, text, update

from campaigns.models import Campaign
from core.clock import utcnow
from core.extensions import db
from tests.factories import GOOD, add_pledges, make_campaign, provider_charges
from tests.redis_server import OwnRedis
from tests.test_rq_settlement import ROOT, _worker_env

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

SWEEP = 2  # seconds between sweeps in these tests
QUEUE = "resilience"


@pytest.fixture
def own_redis():
    server = OwnRedis()
    yield server
    server.kill()


class Workers:
    def __init__(self, app, redis_url: str, tmp_path: Path, **extra):
        self.env = _worker_env(
            app,
            redis_url,
            QUEUE,
            SWEEP_INTERVAL=SWEEP,
            WORKER_MAINTENANCE_INTERVAL=2,
            RECONCILE_INTERVAL=86400,
            **extra,
        )
        self.log = tmp_path / "workers.log"
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            with open(self.log, "ab") as output:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "flask", "--app", "app", "worker"],
                        cwd=ROOT,
                        env=self.env,
                        stdout=output,
                        stderr=output,
                        start_new_session=True,  # its own group: worker, horse, scheduler
                    )
                )

    def kill(self, pid: int) -> None:
        """SIGKILL the whole worker (its process group) that `pid` belongs to."""
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGKILL)
        for process in self.processes:
            if process.pid == group:
                process.wait(10)

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.poll() is None]

    def stop(self) -> None:
        for process in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def workers(app, own_redis, tmp_path):
    running = Workers(app, own_redis.url, tmp_path)
    yield running
    running.stop()


def _campaign_due_in(app, seconds: float, pledges: int = 3) -> tuple[int, list[int]]:
    campaign_id = make_campaign(app, goal=10)
    ids = add_pledges(app, campaign_id, [(GOOD, 10)] * pledges)
    with app.app_context():
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(deadline=utcnow() + timedelta(seconds=seconds))
        )
        db.session.commit()
    return campaign_id, ids


def _wait_settled(app, campaign_id: int, within: float, workers: Workers) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        with app.app_context():
            status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
            db.session.rollback()
        if status == "settled":
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"campaign {campaign_id} is {status!r} after {within} s\n{workers.tail()}")


def _settled_once(app, campaign_id: int, ids: list[int]) -> None:
    assert provider_charges(app, ids) == dict.fromkeys(ids, 1)


def test_redis_restarted_empty_while_workers_run(app, own_redis, workers):
    workers.start(2)
    first, first_ids = _campaign_due_in(app, 1)
    _wait_settled(app, first, 30, workers)
    for _ in range(2):
        own_redis.restart_empty()
        time.sleep(0.5)
    # The queue, the workers' records, RQ's scheduler lock: all gone. A campaign whose
    # deadline passes now is still decided and settled, by the same processes.
    second, second_ids = _campaign_due_in(app, 1)
    took = _wait_settled(app, second, 5 * SWEEP + 20, workers)
    _settled_once(app, first, first_ids)
    _settled_once(app, second, second_ids)
    assert len(workers.alive()) == 2, workers.tail()
    # The workers registered again by themselves.
    connection = Redis.from_url(own_redis.url)
    deadline = time.monotonic() + 5 * SWEEP
    while Worker.count(connection=connection) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Worker.count(connection=connection) == 2, workers.tail()
    print(f"settled {took:.1f} s after its deadline window opened")


def test_the_worker_running_the_sweep_is_killed(app, own_redis, workers, tmp_path):
    marker = tmp_path / "killed-in-sweep"
    workers.env["COUNTERFUND_FAULT_KILL_FIRST_SWEEP"] = str(marker)
    workers.start(2)
    deadline = time.monotonic() + 10 * SWEEP + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "no sweep ran: " + workers.tail()
    time.sleep(0.5)
    assert len(workers.alive()) == 1, "the sweep's worker should have died"
    campaign_id, ids = _campaign_due_in(app, 1)
    _wait_settled(app, campaign_id, 5 * SWEEP + 20, workers)
    _settled_once(app, campaign_id, ids)


def test_the_worker_holding_the_scheduler_lock_is_killed(app, own_redis, workers):
    workers.start(2)
    connection = Redis.from_url(own_redis.url)
    lock = RQScheduler.get_locking_key(QUEUE)
    deadline = time.monotonic() + 30
    while not connection.get(lock) and time.monotonic() < deadline:
        time.sleep(0.1)
    holder = connection.get(lock)
    assert holder, "no worker took RQ's scheduler lock: " + workers.tail()
    scheduler = None
    while scheduler is None and time.monotonic() < deadline + 10:
        try:  # the scheduler process records its pid once it has started
            scheduler = RQScheduler.fetch(holder.decode(), connection)
        except SchedulerNotFound:
            time.sleep(0.1)
    assert scheduler is not None and scheduler.pid, workers.tail()
    # The scheduler runs in a process of its worker's group: kill that whole worker.
    workers.kill(scheduler.pid)
    assert len(workers.alive()) == 1
    # Deadline decisions do not wait for a scheduler: the survivor's sweep makes them.
    campaign_id, ids = _campaign_due_in(app, 1)
    _wait_settled(app, campaign_id, 5 * SWEEP + 20, workers)
    _settled_once(app, campaign_id, ids)
    # And the survivor takes the scheduler over once the dead one's lock expires
    # (RQ's lock lives 61 s), at its next maintenance, not RQ's 10 minutes later.
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        current = connection.get(lock)
        if current and current != holder:
            break
        time.sleep(0.5)
    assert connection.get(lock) not in (None, holder), workers.tail()


def test_database_connections_dropped_under_running_workers(app, own_redis, workers):
    """What a PostgreSQL restart does to its clients: every connection is cut. The
    workers' pools notice (pre-ping), nothing dies for good, and settlement goes on."""
    workers.start(2)
    first, first_ids = _campaign_due_in(app, 1)
    time.sleep(1.5)  # the deadline passes while we cut the connections, twice
    for _ in range(2):
        with app.app_context():
            database = db.session.scalar(text("SELECT current_database()"))
            db.session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
            db.session.commit()
        time.sleep(SWEEP)
    _wait_settled(app, first, 5 * SWEEP + 20, workers)
    second, second_ids = _campaign_due_in(app, 1)
    _wait_settled(app, second, 5 * SWEEP + 20, workers)
    _settled_once(app, first, first_ids)
    _settled_once(app, second, second_ids)
    assert len(workers.alive()) == 2, workers.tail()


def test_a_worker_started_while_redis_is_down_waits_for_it(app, own_redis, workers):
    """Creating an RQ worker already talks to Redis: with Redis down, `flask worker`
    keeps retrying instead of exiting, and works once Redis is back (empty)."""
    own_redis.kill()
    workers.start(1)
    time.sleep(3)
    assert len(workers.alive()) == 1, workers.tail()
    own_redis.start()
    campaign_id, ids = _campaign_due_in(app, 1)
    _wait_settled(app, campaign_id, 5 * SWEEP + 40, workers)
    _settled_once(app, campaign_id, ids)
    assert len(workers.alive()) == 1, workers.tail()


def test_an_idle_worker_keeps_waiting_for_jobs_past_the_clients_default_timeout(
    make_app, redis_url
):
    """RQ blocks on Redis for minutes waiting for a job. With redis-py's default 5-second
    read timeout an idle `flask worker` "lost Redis" every 5 s and slept a growing
    backoff before looking again (found running the pledge-surge bench)."""
    from payments.worker import worker_connection

    app = make_app(JOB_RUNNER="rq", REDIS_URL=redis_url)
    connection = worker_connection(app)
    connection.ping()  # a connection the pool already holds, as the worker's would
    assert connection.blpop(["counterfund:test-no-jobs"], 6) is None
    connection.close()


def test_an_idle_worker_stops_when_told_to(app, own_redis, tmp_path):
    """SIGTERM (systemd's stop, a deploy) asks for a warm shutdown. An idle RQ worker
    answers it by leaving its loop without marking the stop, and `flask worker` took
    that for an unexpected return and started a new worker: it never stopped."""
    workers = Workers(app, own_redis.url, tmp_path)
    workers.env["SWEEP_INTERVAL"] = "3600"  # idle: no sweep under way when told
    workers.start(1)
    [process] = workers.processes
    deadline = time.monotonic() + 60
    while "Listening on" not in workers.tail():
        assert time.monotonic() < deadline, workers.tail()
        time.sleep(0.2)
    time.sleep(6)  # waiting for a job in Redis by now, its scheduler started
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after SIGTERM\n{workers.tail()}") from None
    finally:
        workers.stop()  # SIGKILL for what is left
    assert process.returncode == 0, workers.tail()

"""`flask worker`: an RQ worker (with RQ's scheduler) that outlives the loss of Redis.

Redis may lose everything at any moment (a restart without persistence, a managed
plan's failover). Nothing that settlement needs lives only there:

- The periodic sweep is not a self-rescheduling job. Every worker process runs a
  timer thread of its own (`SweepTicker`) that, once per SWEEP_INTERVAL, enqueues a
  sweep unless another worker already did in this interval (a short-lived Redis key
  taken with SET NX). After a wipe the key is gone and the next tick enqueues again.
  The sweep decides every campaign past its deadline, so a lost `enqueue_at` deadline
  job or a dead RQ scheduler delays a decision by one interval at most.
- The same ticker re-registers the worker when its Redis record vanished.
- RQ's scheduler lock is retaken promptly: workers run RQ's maintenance every
  WORKER_MAINTENANCE_INTERVAL seconds (RQ's default is 10 minutes), which restarts a
  dead scheduler process and takes over the lock of a killed one once it expires.
- A worker that RQ lets die on a connection error (RQ exits when it loses Redis while
  watching a work horse) is replaced in the same process by a fresh one, after a
  short backoff: a loop of our own supervises it. Run the process itself under the
  Procfile's process manager or systemd (Restart=always) for the rest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from flask import Flask

from core.jobs import set_worker_app

log = logging.getLogger(__name__)

SWEEP_LEASE_KEY = "counterfund:sweep-lease"
# Longer than RQ's blocking wait for a job (its worker_ttl, 420 s, less 15). redis-py 8
# gives every connection a 5-second read timeout unless told otherwise, and RQ's own
# adjustment misses connections its pool already holds: an idle worker then "lost
# Redis" every 5 s and waited a growing backoff (up to a minute) before looking for
# jobs again, so jobs waited too.
WORKER_SOCKET_TIMEOUT = 420


def worker_connection(app: Flask) -> redis.Redis:
    """A connection of its own for one RQ worker, whose reads may block for minutes."""
    return redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=WORKER_SOCKET_TIMEOUT)


class SweepTicker(threading.Thread):
    """Once per interval: enqueue the sweep (one worker per interval does) and make
    sure this worker is registered. Never dies of a Redis error."""

    def __init__(self, app: Flask, holder: dict):
        super().__init__(name="counterfund-sweep-ticker", daemon=True)
        self.app = app
        self.holder = holder
        self.interval = app.config["SWEEP_INTERVAL"]
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("worker: Redis unreachable (%s); retrying next tick", exc)
            except Exception:
                log.exception("worker: sweep tick failed")
            self.stopping.wait(self.interval)

    def tick(self) -> None:
        from rq.worker_registration import get_keys

        from payments.jobs import periodic_sweep

        runner = self.app.extensions["job_runner"]
        worker = self.holder.get("worker")
        if worker is not None and worker.key not in get_keys(connection=runner.connection):
            # Redis lost its data; RQ's heartbeat may have recreated part of the record.
            log.warning("worker: %s was not registered (Redis lost its data?)", worker.name)
            runner.connection.delete(worker.key)
            worker.register_birth()
        # Slightly shorter than the interval, so the next tick of any worker finds it gone.
        lease = max(1, self.interval - 1)
        if runner.connection.set(
            SWEEP_LEASE_KEY, worker.name if worker else "1", nx=True, ex=lease
        ):
            runner.queue.enqueue(periodic_sweep, job_timeout=3600, result_ttl=0)


def run_worker(app: Flask, burst: bool = False) -> None:
    from rq import Worker

    set_worker_app(app)
    runner = app.extensions["job_runner"]
    holder: dict = {}
    ticker = None
    if not burst:
        ticker = SweepTicker(app, holder)
        ticker.start()
    backoff = 1.0
    try:
        while True:
            worker = None
            try:
                # Creating a worker talks to Redis already (CLIENT SETNAME): it belongs
                # inside the retry too.
                worker = Worker(
                    [runner.queue],
                    connection=worker_connection(app),
                    maintenance_interval=app.config["WORKER_MAINTENANCE_INTERVAL"],
                )
                holder["worker"] = worker
                worker.work(with_scheduler=True, burst=burst)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # This worker is gone: the ticker must not register it again, and its
                # record (the ticker may have restored it just before) goes too, so
                # Redis lists only the workers that run.
                holder["worker"] = None
                log.warning("worker: lost Redis (%s); a new worker starts in %.0f s", exc, backoff)
                time.sleep(backoff)
                if worker is not None:
                    with contextlib.suppress(redis.exceptions.RedisError):
                        worker.register_death()
                backoff = min(backoff * 2, 30)
                continue
            # Told to stop (SIGTERM, SIGINT): RQ marks it in `_stop_requested` only
            # when a job was running; an idle worker just leaves its loop, with the
            # request's date set.
            if burst or worker._stop_requested or worker._shutdown_requested_date:
                return
            # work() returned without being asked to stop: start again.
            backoff = 1.0
    finally:
        if ticker is not None:
            ticker.stopping.set()

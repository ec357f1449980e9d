"""Background jobs: RQ on Redis in production, a thread in the embedded default.

Jobs are plain functions that take ids. `enqueue_after_commit()` holds them until
the database transaction that caused them commits (and drops them on rollback), so a
job never looks for a row that is not there yet. RQ delivers at least once and may
run a job twice or concurrently: correctness comes from the database, never from the
queue.

JOB_RUNNER chooses how jobs run:
- "rq": RQ on REDIS_URL; `flask --app app worker` runs the worker with its scheduler.
- "thread": an in-process scheduler thread (the `make run` default without Redis).
- "eager": right after commit, in the caller's thread (tests, CLI).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps

from flask import Flask, current_app, has_app_context, has_request_context
from sqlalchemy import String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.clock import utcnow
from core.extensions import Model, current_app_object, db
from core.types import UTCDateTime

log = logging.getLogger(__name__)

QUEUE_NAME = "settlement"
_worker_app: Flask | None = None


class JobFailure(Model):
    """A job that raised, for operators (RQ keeps its own registry too)."""

    __tablename__ = "job_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(120))
    arguments: Mapped[str] = mapped_column(String(500))
    error: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def record_failure(name: str, args: tuple, exc: BaseException) -> None:
    db.session.rollback()
    db.session.add(
        JobFailure(
            job=name[:120],
            arguments=repr(args)[:500],
            error="".join(traceback.format_exception(exc))[-4000:],
        )
    )
    db.session.commit()


def set_worker_app(app: Flask) -> None:
    """The app jobs run in when no app context is active (an RQ work horse). Set by
    the worker's entry point (`flask worker`), so core never imports the app."""
    global _worker_app
    _worker_app = app


def app_job(fn: Callable) -> Callable:
    """Run a job inside an app context and a request context on PUBLIC_URL (for
    url_for in emails)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        if has_request_context():
            return fn(*args, **kwargs)
        if has_app_context():
            app = current_app_object()
        elif _worker_app is not None:
            app = _worker_app
        else:
            raise RuntimeError("jobs run in `flask --app app worker`, which provides the app")
        with app.test_request_context("/", base_url=app.config["PUBLIC_URL"]):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                record_failure(f"{fn.__module__}.{fn.__name__}", args, exc)
                raise

    return wrapper


# ---- enqueueing after commit ---------------------------------------------------------


def enqueue_after_commit(
    func: Callable,
    *args,
    at: datetime | None = None,
    job_id: str | None = None,
    coalesce: bool = False,
) -> None:
    """With `coalesce`, one job of this name (`job_id`) waits at a time: it is not queued
    again in the same transaction, nor in RQ until it starts (so the job must do all
    there is to do, not only this transaction's share)."""
    db.session.connection()  # a transaction under way, so a rollback is seen
    pending = db.session.info.setdefault("after_commit_jobs", [])
    if coalesce and any(queued[3] == job_id for queued in pending):
        return
    pending.append((func, args, at, job_id, coalesce))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: nothing is committed yet
    jobs = session.info.pop("after_commit_jobs", None)
    if not jobs:
        return
    runner = current_app.extensions["job_runner"]
    for func, args, at, job_id, coalesce in jobs:
        try:
            if coalesce:
                runner.enqueue_once(func, job_id)
            else:
                runner.enqueue(func, *args, at=at, job_id=job_id)
        except Exception as exc:
            # The change is committed whatever happens here: failing the request would
            # only hide that from the person who made it. What the job would have done
            # is left waiting in the database, for the sweep.
            log.error(
                "could not queue job %s (%s); the sweep picks up what it left",
                getattr(func, "__name__", func),
                type(exc).__name__,
            )


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction) -> None:
    # Fires on every rollback() call, even with no transaction under way; a savepoint's
    # rollback leaves the outer transaction's jobs alone.
    if not previous_transaction.nested:
        session.info.pop("after_commit_jobs", None)


# ---- runners -------------------------------------------------------------------------


class _RunsEveryCopy:
    def enqueue(self, func, *args, at=None, job_id=None):
        raise NotImplementedError

    def enqueue_once(self, func, job_id):
        """No queue to look into: each copy runs (the job finds nothing left to do)."""
        self.enqueue(func)


class EagerRunner(_RunsEveryCopy):
    """Runs each job at once, in the caller's thread (tests and the CLI)."""

    def __init__(self, app: Flask):
        self.app = app
        self._running = False
        self._queue: list[tuple[Callable, tuple]] = []

    def enqueue(self, func, *args, at=None, job_id=None):
        if at is not None and at > utcnow():
            return  # a job for later: the sweep runs it once it is due
        self._queue.append((func, args))
        if self._running:
            return  # the outer loop runs it once the current job has finished
        self._running = True
        try:
            while self._queue:
                queued, queued_args = self._queue.pop(0)
                with self.app.app_context():
                    queued(*queued_args)
        finally:
            self._running = False


class ThreadRunner(_RunsEveryCopy):
    """A daemon thread that runs due jobs and a periodic sweep (the embedded default)."""

    def __init__(self, app: Flask, sweep: Callable | None, interval: float):
        self.app = app
        self.sweep = sweep
        self.interval = interval
        self._heap: list = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="counterfund-jobs", daemon=True)
            self._thread.start()
            if self.sweep is not None:
                self.enqueue(self._sweep_and_reschedule)

    def stop(self, timeout: float = 10) -> None:
        """Finish the job under way, then end the thread (tests, shutdown)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _sweep_and_reschedule(self) -> None:
        try:
            if self.sweep is not None:
                self.sweep()
        finally:
            self.enqueue(self._sweep_and_reschedule, at=utcnow() + timedelta(seconds=self.interval))

    def enqueue(self, func, *args, at=None, job_id=None):
        run_at = time.time() if at is None else max(time.time(), at.timestamp())
        with self._wake:
            heapq.heappush(self._heap, (run_at, next(self._counter), func, args))
            self._wake.notify()
        # Not started here: the web process starts the thread (and its sweep) with its
        # first request. A CLI command's jobs are left to that sweep; started from the
        # command, the sweep raced it (the demo loader's mail started it, and it
        # settled campaigns the loader was still pledging to).

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.time()):
                    timeout = self._heap[0][0] - time.time() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, func, args = heapq.heappop(self._heap)
            with self.app.test_request_context("/", base_url=self.app.config["PUBLIC_URL"]):
                try:
                    func(*args)
                except Exception as exc:  # keep the thread alive; operators see failures
                    log.exception("job %s failed", getattr(func, "__name__", func))
                    try:
                        record_failure(getattr(func, "__name__", repr(func)), args, exc)
                    except Exception:
                        log.exception("could not record the job failure")


class RQRunner:
    def __init__(self, app: Flask):
        from redis import Redis
        from rq import Queue

        self.connection = Redis.from_url(app.config["REDIS_URL"])
        self.queue = Queue(app.config["JOB_QUEUE"], connection=self.connection)

    def enqueue(self, func, *args, at=None, job_id=None):
        from rq import Retry

        options = {"retry": Retry(max=3, interval=[10, 60, 300]), "job_timeout": 3600}
        if job_id:
            options["job_id"] = job_id
        if at is not None and at > utcnow():
            self.queue.enqueue_at(at, func, *args, **options)
        else:
            self.queue.enqueue(func, *args, **options)

    def enqueue_once(self, func, job_id):
        # A flag, not RQ's unique job id: a finishing job cleans up its id's records
        # and could take a new job of the same id with it. The job drops the flag as it
        # starts, so work committed from then on queues the next one.
        flag = f"counterfund:queued:{job_id}"
        if self.connection.set(flag, 1, nx=True, ex=ONCE_FLAG_SECONDS):
            try:
                self.queue.enqueue(_run_once, flag, func, result_ttl=0, job_timeout=3600)
            except Exception:
                # No job took the flag: leaving it would keep the next ones from being
                # queued for its whole lifetime. (If Redis is gone, this fails too and
                # the flag expires on its own.)
                self.connection.delete(flag)
                raise


ONCE_FLAG_SECONDS = 300  # should the job be lost, the sweep does its work meanwhile


def _run_once(flag: str, func: Callable) -> None:
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.connection.delete(flag)
    func()


def init_jobs(app: Flask, sweep: Callable | None = None) -> None:
    kind = app.config["JOB_RUNNER"]
    runner: RQRunner | ThreadRunner | EagerRunner
    if kind == "rq":
        runner = RQRunner(app)
    elif kind == "thread":
        runner = ThreadRunner(app, sweep, app.config["SWEEP_INTERVAL"])
    else:
        runner = EagerRunner(app)
    app.extensions["job_runner"] = runner


def start_background_jobs(app: Flask) -> None:
    """Start the embedded thread (the web process of `make run` calls this)."""
    runner = app.extensions["job_runner"]
    if isinstance(runner, ThreadRunner):
        runner.start()

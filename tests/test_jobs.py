"""How jobs are triggered: at launch (RQ's scheduler), by the embedded thread, after
commit only, and what operators see when one fails."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from campaigns.models import Campaign
from core.extensions import db
from core.jobs import JobFailure, app_job, enqueue_after_commit
from tests.factories import (
    GOOD,
    add_pledges,
    campaign,
    create_draft,
    launched,
    make_campaign,
    register,
)

RAN: list[int] = []


def remember(value: int) -> None:
    RAN.append(value)


def test_jobs_wait_for_the_commit_and_vanish_on_rollback(app):
    RAN.clear()
    with app.app_context():
        enqueue_after_commit(remember, 1)
        db.session.rollback()
        assert RAN == []
        enqueue_after_commit(remember, 2)
        assert RAN == []
        db.session.commit()
    assert RAN == [2]


def test_jobs_wait_for_the_transaction_not_a_savepoint_inside_it(app):
    """SQLAlchemy sends its commit event when a savepoint is released too (the ledger
    takes one for an account's first posting): the jobs of the transaction so far ran
    then, before anything they were about was committed, and a savepoint rolled back
    later did not take them back."""
    RAN.clear()
    with app.app_context():
        enqueue_after_commit(remember, 1)
        with db.session.begin_nested():
            pass
        assert RAN == []
        db.session.rollback()
        enqueue_after_commit(remember, 2)
        with db.session.begin_nested():
            enqueue_after_commit(remember, 3)
        assert RAN == []
        db.session.commit()
    assert RAN == [2, 3]


def test_launch_schedules_the_decision_at_the_deadline_in_rq(make_app, redis_url):
    from redis import Redis
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    app = make_app(JOB_RUNNER="rq", REDIS_URL=redis_url, JOB_QUEUE="launch-test")
    client = app.test_client()
    register(client)
    slug = create_draft(client).headers["Location"].rsplit("/", 1)[-1]
    slug = launched(client, slug)
    with app.app_context():
        c = db.session.scalar(db.select(Campaign).where(Campaign.slug == slug))
    connection = Redis.from_url(redis_url)
    registry = ScheduledJobRegistry(queue=Queue("launch-test", connection=connection))
    job_id = f"decide-campaign-{c.id}"
    assert job_id in registry.get_job_ids()
    scheduled = registry.get_scheduled_time(job_id)
    assert abs((scheduled.replace(tzinfo=UTC) - c.deadline).total_seconds()) < 1
    connection.close()


def test_embedded_thread_settles_a_campaign_at_its_deadline(make_app):
    app = make_app(JOB_RUNNER="thread", SWEEP_INTERVAL=1)
    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, [(GOOD, 20)])
    with app.app_context():
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == cid)
            .values(deadline=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()
    app.test_client().get("/healthz")  # the first request starts the thread
    for _ in range(100):  # bounded: at most 10 s
        if campaign(app, cid).status == "settled":
            break
        time.sleep(0.1)
    assert campaign(app, cid).status == "settled"


@app_job
def broken_job(campaign_id: int) -> None:
    raise RuntimeError(f"boom for {campaign_id}")


def test_failed_jobs_are_recorded_for_operators(app):
    with app.app_context():
        with pytest.raises(RuntimeError, match="boom"):
            broken_job(7)
        assert db.session.scalar(db.select(db.func.count(JobFailure.id))) == 1
    result = app.test_cli_runner().invoke(args=["failed-jobs"])
    assert "broken_job(7,)" in result.output and "boom for 7" in result.output

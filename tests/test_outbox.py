"""One bad email must never stop all email; single-line fields are cleaned at input."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from campaigns.models import Campaign
from core import clock, outbox
from core.extensions import db
from core.text import single_line
from tests.factories import campaign, create_draft, mail_to, make_campaign, pledge, register


def _eml(app, message_id: int):
    path = Path(app.config["OUTBOX_FOLDER"]) / f"{message_id:08d}.eml"
    return message_from_bytes(path.read_bytes(), policy=policy.default) if path.is_file() else None


@pytest.mark.parametrize(
    "title", ["Rent strike\u2028fund", "Rent strike\r\nfund", "Rent\x0bstrike fund"]
)
def test_a_title_with_line_breaks_still_makes_a_valid_subject(app, title):
    with app.app_context():
        message = outbox.queue("sup@example.org", f"Your pledge to {title}", "body", "t")
        db.session.commit()  # its delivery job runs once the message is committed
        email = _eml(app, message.id)
        assert outbox.deliver_pending() == 0  # nothing left waiting
    assert email["Subject"] == f"Your pledge to {single_line(title)}"
    assert "\n" not in email["Subject"] and "\u2028" not in email["Subject"]
    assert email["Date"]


def test_a_poisoned_message_never_blocks_ten_good_ones(app):
    with app.app_context():
        poisoned = outbox.queue("a@example.org", "Poisoned", "body", "poison")
        # A real failure of the real sending path, for this message only: its file's
        # place in the mailbox is taken by a folder.
        folder = outbox.outbox_folder()
        (folder / f"{poisoned.id:08d}.eml").mkdir()
        good = [
            outbox.queue(f"s{n}@example.org", f"Receipt {n}", "body", "receipt") for n in range(10)
        ]
        db.session.commit()  # one delivery job for the eleven, after the commit
        assert all(_eml(app, m.id) is not None for m in good)
        db.session.refresh(poisoned)
        assert poisoned.delivered_at is None and poisoned.attempts == 1
        assert poisoned.next_attempt_at > clock.utcnow()
        assert poisoned.last_error == "IsADirectoryError"
        # Retried with backoff, then set aside for an operator; later mail still flows.
        for _ in range(app.config["OUTBOX_MAX_ATTEMPTS"] - 1):
            clock.freeze(clock.utcnow() + timedelta(hours=7))
            outbox.deliver_pending()
        db.session.refresh(poisoned)
        assert poisoned.set_aside_at is not None
        assert poisoned.attempts == app.config["OUTBOX_MAX_ATTEMPTS"]
        later = outbox.queue("late@example.org", "Later", "body", "receipt")
        db.session.commit()
        assert _eml(app, later.id) is not None
        assert [m.id for m in outbox.set_aside()] == [poisoned.id]
        _ok, report = outbox.health()
        assert report["set_aside"] == 1
    listing = app.test_cli_runner().invoke(args=["outbox", "list"])
    assert f"{poisoned.id}  poison" in listing.output
    assert "a@example.org" not in listing.output
    (folder / f"{poisoned.id:08d}.eml").rmdir()
    assert app.test_cli_runner().invoke(args=["outbox", "retry", str(poisoned.id)]).exit_code == 0
    with app.app_context():
        assert outbox.deliver_pending() == 1


def test_backoff_waits_before_the_next_attempt(app):
    with app.app_context():
        message = outbox.queue("a@example.org", "Poisoned", "body", "poison")
        (outbox.outbox_folder() / f"{message.id:08d}.eml").mkdir()
        db.session.commit()  # the delivery job's attempt fails
        outbox.deliver_pending()  # not due yet: no second attempt
        db.session.refresh(message)
        assert message.attempts == 1


HOSTILE = {
    "\u2028": " ",
    "\u2029": " ",
    "\r\n": " ",
    "\x0b": " ",
    "\x00": "",
    "\u202e": "",  # right-to-left override
    "\u2066": "",  # left-to-right isolate
    "\u200b": "",  # zero-width space
    "\ufeff": "",
}


@pytest.mark.parametrize(("inserted", "becomes"), list(HOSTILE.items()))
def test_single_line_fields_are_cleaned_at_input(app, inserted, becomes):
    organizer = app.test_client()
    register(organizer, email="org@example.org", name="Org")
    response = create_draft(organizer, title=f"Rent strike{inserted}fund", summary=f"A{inserted}B")
    assert response.status_code == 302, response.get_data(as_text=True)[:1000]
    with app.app_context():
        campaign = db.session.scalar(select(Campaign))
    assert campaign.title == f"Rent strike{becomes}fund"
    assert campaign.summary == f"A{becomes}B"


def test_purge_deletes_delivered_mail_past_its_age_and_keeps_the_rest(app):
    with app.app_context():
        outbox.queue("a@example.org", "Old", "delivered long ago")
        waiting = outbox.queue("b@example.org", "Waiting", "never delivered")
        waiting_id = waiting.id
        db.session.execute(
            update(outbox.OutboxMessage)
            .where(outbox.OutboxMessage.id == waiting_id)
            .values(next_attempt_at=clock.utcnow() + timedelta(days=365))
        )
        db.session.commit()  # the delivery job sends the one that is due
    clock.freeze(clock.utcnow() + timedelta(days=31))
    recent_id = None
    with app.app_context():
        recent = outbox.queue("c@example.org", "Recent", "delivered today")
        db.session.commit()
        recent_id = recent.id
    result = app.test_cli_runner().invoke(args=["outbox", "purge", "--older-than", "30"])
    assert result.exit_code == 0 and "Deleted 1 delivered" in result.output
    with app.app_context():
        left = set(db.session.scalars(select(outbox.OutboxMessage.id)))
    assert left == {waiting_id, recent_id}
    assert app.test_cli_runner().invoke(args=["outbox", "purge", "--older-than", "-1"]).exit_code


def test_pledges_are_answered_before_their_emails_are_sent_and_one_job_sends_them(
    make_app, redis_url
):
    """In production the request only queues the message; an RQ worker sends it (a
    surge of pledges does not wait for mail)."""
    from redis import Redis
    from rq import Queue, SimpleWorker

    app = make_app(JOB_RUNNER="rq", REDIS_URL=redis_url, JOB_QUEUE="mail-test")
    slug = campaign(app, make_campaign(app)).slug
    for n in range(3):
        response = pledge(app.test_client(), slug, email=f"surge{n}@example.org")
        assert response.status_code == 302
    assert mail_to(app, "surge0@example.org") == []
    with app.app_context():
        waiting = db.session.scalars(
            select(outbox.OutboxMessage.delivered_at).where(
                outbox.OutboxMessage.topic == "pledge-confirmation"
            )
        ).all()
        assert waiting == [None, None, None]
    connection = Redis.from_url(redis_url)
    mail_queue = Queue("mail-test", connection=connection)
    assert mail_queue.count == 1  # one delivery job waits for the three
    with app.app_context():
        SimpleWorker([mail_queue], connection=connection).work(burst=True)
    for n in range(3):
        [sent] = mail_to(app, f"surge{n}@example.org")
        assert "Thank you for backing" in sent
    # The job's record went with it: the next pledge queues a new one.
    pledge(app.test_client(), slug, email="later@example.org")
    assert mail_queue.count == 1
    connection.close()


def test_a_delivery_job_that_could_not_be_queued_does_not_hold_back_the_next(
    make_app, redis_url, monkeypatch
):
    """Redis took the "one job is waiting" flag but then failed the enqueue itself (it
    went away between the two calls): the flag must not stay, or no email would be
    queued for the flag's lifetime and mail would wait for the slow sweep."""
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue

    app = make_app(JOB_RUNNER="rq", REDIS_URL=redis_url, JOB_QUEUE="mail-test")
    slug = campaign(app, make_campaign(app)).slug
    runner = app.extensions["job_runner"]

    def redis_went_away(*args, **kwargs):
        raise RedisConnectionError("Connection closed by server.")

    monkeypatch.setattr(runner.queue, "enqueue", redis_went_away)
    assert pledge(app.test_client(), slug, email="first@example.org").status_code == 302
    monkeypatch.undo()

    assert pledge(app.test_client(), slug, email="second@example.org").status_code == 302
    connection = Redis.from_url(redis_url)
    assert Queue("mail-test", connection=connection).count == 1
    connection.close()


def test_a_pledge_stands_when_redis_is_down_and_its_email_waits_for_the_sweep(make_app):
    """The job that sends the email cannot be queued (Redis refuses connections): the
    pledge is committed already, so the supporter still gets its page, and the message
    waits for the sweep instead of being lost with a 500."""
    app = make_app(JOB_RUNNER="rq", REDIS_URL="redis://127.0.0.1:9/0", JOB_QUEUE="mail-test")
    slug = campaign(app, make_campaign(app)).slug
    response = pledge(app.test_client(), slug, email="down@example.org")
    assert response.status_code == 302
    assert mail_to(app, "down@example.org") == []
    with app.app_context():
        assert outbox.deliver_pending() == 1  # what the sweep runs
    [sent] = mail_to(app, "down@example.org")
    assert "Thank you for backing" in sent

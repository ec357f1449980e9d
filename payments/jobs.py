"""Settlement jobs. Each takes ids, reloads state, and commits its own small steps.

Any of them may run twice, late, or at the same time as a copy of itself on another
worker: every step is a guarded transition in the database (see settlement.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from campaigns.models import Campaign, CampaignStatus
from core import heartbeat, outbox
from core.clock import utcnow
from core.extensions import db
from core.jobs import app_job, enqueue_after_commit
from ledger import log as ledger_log
from payments import emails, fees, lifecycle, notifications, services, settlement
from payments.backends import get_backend
from payments.backends.base import BackendError
from payments.models import Pledge, PledgeStatus

log = logging.getLogger(__name__)


@app_job
def decide_campaign(campaign_id: int) -> None:
    """At the deadline: decide, then charge or release. Safe to run any number of times."""
    settlement.decide(campaign_id)
    db.session.commit()
    continue_campaign(campaign_id)


def continue_campaign(campaign_id: int) -> None:
    """Start (or resume) whatever a decided campaign still needs."""
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status in (CampaignStatus.FUNDED, CampaignStatus.SETTLING):
        settlement.start_settling(campaign_id)
        _fan_out(charge_campaign, campaign_id)
        db.session.commit()
    elif status in (CampaignStatus.UNFUNDED, CampaignStatus.CANCELLED):
        enqueue_after_commit(release_campaign, campaign_id)
        db.session.commit()


def _fan_out(job, campaign_id: int) -> None:
    """Enough copies of the charging job for the open pledges, each claiming its own
    batches until none are left (copies never collide: claims are disjoint)."""
    open_pledges = db.session.scalar(
        select(db.func.count(Pledge.id)).where(
            Pledge.campaign_id == campaign_id, Pledge.status.in_(settlement.OPEN_STATUSES)
        )
    )
    batch = current_app.config["SETTLEMENT_BATCH_SIZE"]
    copies = max(1, min(current_app.config["SETTLEMENT_FAN_OUT"], -(-(open_pledges or 0) // batch)))
    for _ in range(copies):
        enqueue_after_commit(job, campaign_id)


@app_job
def release_card(customer_id: str, payment_method_id: str | None) -> None:
    """Detach a card we no longer need (replaced, or its pledge cancelled). A failure
    leaves it for the settlement's release, which detaches every card of the pledge."""
    try:
        get_backend().release(customer_id, payment_method_id)
    except BackendError:
        log.warning("payments: releasing a card failed; settlement retries it")


@app_job
def charge_campaign(campaign_id: int) -> dict[str, int]:
    totals = charge_until_done(campaign_id)
    ledger_log.sequence()
    outbox.deliver_pending()
    return totals


def charge_until_done(
    campaign_id: int, totals: dict[str, int] | None = None, progress=None
) -> dict[str, int]:
    """Claim and charge batches until nothing is left to claim, then settle the
    campaign if every pledge is done. Adds outcomes to `totals`."""
    totals = {} if totals is None else totals
    batch = current_app.config["SETTLEMENT_BATCH_SIZE"]
    while claims := settlement.claim_batch(campaign_id, batch):
        for outcome, count in settlement.charge_claims(claims).items():
            totals[outcome] = totals.get(outcome, 0) + count
        if progress is not None:
            progress(len(claims))
    settlement.finish_if_done(campaign_id)
    return totals


@app_job
def advance_recurring(campaign_id: int, totals: dict[str, int] | None = None) -> None:
    """A recurring campaign's due periods: decided, charged, closed; and its end."""
    settlement.advance(campaign_id)
    charge_until_done(campaign_id, totals)
    settlement.close_charged_periods(campaign_id)
    for pledge_id in settlement.pause_after_failed_periods(campaign_id):
        pledge = db.session.get_one(Pledge, pledge_id)
        services.withdraw_from_totals(pledge)
        emails.paused_after_failures(pledge)
    for customer_id, card in settlement.end_if_over(campaign_id):
        enqueue_after_commit(release_card, customer_id, card)
    db.session.commit()


@app_job
def release_campaign(campaign_id: int) -> int:
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    reason = "cancelled" if status == CampaignStatus.CANCELLED else "unfunded"
    released = release_all(campaign_id, reason)
    if status == CampaignStatus.UNFUNDED:
        settlement.finish_if_done(campaign_id)
    outbox.deliver_pending()
    return released


def release_all(campaign_id: int, reason: str) -> int:
    released = 0
    batch = current_app.config["SETTLEMENT_BATCH_SIZE"]
    while True:
        done = settlement.release_batch(campaign_id, batch, reason)
        released += done
        if done < batch:
            return released


@app_job
def sweep() -> None:
    """The periodic safety net: decides every due campaign (a lost or late deadline
    job strands nothing), continues open settlements, reminds, drops at the end of
    the retry window, cancels abandoned card forms, and sends waiting mail."""
    settlement.kill_once_for_tests("COUNTERFUND_FAULT_KILL_FIRST_SWEEP")
    for campaign_id in settlement.due_campaign_ids():
        settlement.decide(campaign_id)
        db.session.commit()
    for campaign_id in settlement.open_campaign_ids():
        settlement.send_reminders(campaign_id)
        settlement.drop_expired_authentications(campaign_id)
        continue_campaign(campaign_id)
        settlement.finish_if_done(campaign_id)
    for campaign_id in settlement.live_recurring_campaign_ids():
        advance_recurring(campaign_id)
    for campaign_id in cancelled_with_open_pledges():
        release_campaign(campaign_id)
    settlement.release_suspended_at_deadline()
    for campaign_id in settlement.released_with_open_pledges():
        release_all(campaign_id, "suspended")
    cancel_abandoned_pledges()
    notifications.remind_before_deadline()
    notifications.notify_before_period_charges()
    fees.follow_pending_fees()
    ledger_log.sequence()
    reconcile_if_due()
    # Work of packages above payments (webhook retries, the open data dump).
    for task in current_app.extensions.get("sweep_tasks", []):
        task()
    heartbeat.beat("sweep")
    db.session.commit()
    outbox.deliver_pending()


def reconcile_if_due() -> None:
    """Once per RECONCILE_INTERVAL, compare the ledger with the provider's records."""
    from payments.reconcile import latest_report, reconcile

    last = latest_report()
    interval = timedelta(seconds=current_app.config["RECONCILE_INTERVAL"])
    if last is None or last.created_at <= utcnow() - interval:
        reconcile()


def cancelled_with_open_pledges() -> list[int]:
    return settlement.with_open_pledges(Campaign.status == CampaignStatus.CANCELLED)


def cancel_abandoned_pledges() -> int:
    """A card form left unfinished for PENDING_PLEDGE_TTL: the pending pledge ends."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["PENDING_PLEDGE_TTL"])
    stale = (
        select(Pledge.id)
        .where(Pledge.status == PledgeStatus.PENDING, Pledge.created_at <= cutoff)
        .limit(1000)
    )
    moved = lifecycle.move(
        "abandoned", db.session.scalars(stale).all(), values={"cancelled_at": utcnow()}
    )
    db.session.commit()
    return len(moved)


@app_job
def periodic_sweep() -> None:
    """The sweep as an RQ job. Not self-rescheduling: every worker's own timer enqueues
    it once per interval (payments/worker.py), so a Redis that lost everything, or a
    sweep killed half-way, never stops the next one."""
    sweep()


def schedule_deadline(campaign: Campaign, **_) -> None:
    """Signal handler: at launch, a decision job is scheduled for the deadline."""
    enqueue_after_commit(
        decide_campaign, campaign.id, at=campaign.deadline, job_id=f"decide-campaign-{campaign.id}"
    )


def release_on_cancel(campaign: Campaign, **_) -> None:
    enqueue_after_commit(release_campaign, campaign.id)


def run_due_now(progress=None) -> dict[str, int]:
    """Everything due, synchronously, in this process (`flask settle --due`)."""
    summary: dict[str, int] = {}
    for campaign_id in settlement.due_campaign_ids():
        settlement.decide(campaign_id)
        db.session.commit()
    for campaign_id in settlement.open_campaign_ids():
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        settlement.send_reminders(campaign_id)
        settlement.drop_expired_authentications(campaign_id)
        if status == CampaignStatus.UNFUNDED:
            summary["released"] = summary.get("released", 0) + release_campaign(campaign_id)
            continue
        settlement.start_settling(campaign_id)
        db.session.commit()
        charge_until_done(campaign_id, summary, progress)
    for campaign_id in settlement.live_recurring_campaign_ids():
        advance_recurring(campaign_id, summary)
    ledger_log.sequence()
    outbox.deliver_pending()
    return summary

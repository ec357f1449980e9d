"""Settlement: decide at the deadline, then charge or release every pledge exactly once.

Exactly once comes from the database, not from the queue:

1. *Claim.* One UPDATE moves a batch of pledges to `charging`, bumps each one's
   attempt number and stores its idempotency key (`pledge-<id>-attempt-<n>`), then
   commits. On PostgreSQL the batch is chosen with `FOR UPDATE SKIP LOCKED`, so
   workers running the same job claim disjoint pledges without waiting on each other;
   on SQLite the single UPDATE runs under the database's write lock, which serialises
   claims the way BEGIN IMMEDIATE would, and the rowcount/RETURNING tells who won.
2. *Call* the provider with the stored key (outside any database transaction). The
   provider never charges twice for one key.
3. *Record* the answer with an UPDATE guarded by `status = 'charging' AND charge_key =
   <key>`; only the winner writes the ledger, in the same transaction.

A worker killed between 2 and 3 leaves the pledge in `charging` with its key. After the
lease (CHARGE_LEASE_SECONDS) the pledge is claimed again *with the same key*: the job
first asks the provider for a charge carrying our pledge id, then repeats the call
with the same key, so a charge that did happen is found, never repeated.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm.attributes import set_committed_value

from campaigns.models import Campaign, CampaignStatus, FundingModel
from core import outbox
from core.clock import utcnow
from core.extensions import db
from core.money import Money
from ledger import services as ledger
from ledger.models import EntryKind
from payments.backends import get_backend
from payments.backends.base import BackendError, ChargeResult
from payments.models import Pledge, PledgeEvent, PledgeStatus
from payments.privacy import public_counterparty, public_reference

log = logging.getLogger(__name__)

OPEN_STATUSES = (
    PledgeStatus.ACTIVE,
    PledgeStatus.CHARGING,
    PledgeStatus.FAILED,
    PledgeStatus.NEEDS_AUTHENTICATION,
)


# ---- Deciding ------------------------------------------------------------------------


def _funded_condition():
    all_or_nothing = and_(
        Campaign.pledged_amount >= Campaign.goal_amount,
        or_(Campaign.min_backers.is_(None), Campaign.backer_count >= Campaign.min_backers),
    )
    return case(
        (Campaign.funding_model == FundingModel.ALL_OR_NOTHING, all_or_nothing),
        else_=Campaign.backer_count > 0,
    )


def decide(campaign_id: int) -> bool:
    """Fix the outcome of a campaign past its deadline. Deciding twice changes nothing.

    The outcome is computed inside the UPDATE, from the same row version it writes, so
    a pledge committed a moment before the deadline is always counted.
    """
    now = utcnow()
    result = db.session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == CampaignStatus.LIVE,
            Campaign.deadline <= now,
        )
        .values(
            status=case(
                (_funded_condition(), CampaignStatus.FUNDED.value),
                else_=CampaignStatus.UNFUNDED.value,
            ),
            decided_at=now,
            final_pledged_amount=Campaign.pledged_amount,
            final_backer_count=Campaign.backer_count,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def due_campaign_ids() -> list[int]:
    return list(
        db.session.scalars(
            select(Campaign.id)
            .where(Campaign.status == CampaignStatus.LIVE, Campaign.deadline <= utcnow())
            .order_by(Campaign.deadline)
        )
    )


def open_campaign_ids() -> list[int]:
    """Decided campaigns that still have work: charging, retrying or releasing."""
    return list(
        db.session.scalars(
            select(Campaign.id)
            .where(
                Campaign.status.in_(
                    [
                        CampaignStatus.FUNDED,
                        CampaignStatus.SETTLING,
                        CampaignStatus.UNFUNDED,
                    ]
                )
            )
            .order_by(Campaign.id)
        )
    )


def start_settling(campaign_id: int) -> None:
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.FUNDED)
        .values(status=CampaignStatus.SETTLING)
        .execution_options(synchronize_session=False)
    )


# ---- Claiming ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    pledge_id: int
    public_id: str
    amount: int
    currency: str
    customer_id: str
    payment_method_id: str
    charge_key: str
    attempt: int
    recovering: bool  # an earlier attempt with this key may have reached the provider
    on_session: bool = False


def _claimable(campaign_id: int, now, size: int):
    return (
        select(Pledge.id)
        .where(
            Pledge.campaign_id == campaign_id,
            or_(
                Pledge.status == PledgeStatus.ACTIVE,
                and_(
                    Pledge.status == PledgeStatus.FAILED,
                    or_(Pledge.retry_requested, Pledge.retry_until <= now),
                ),
            ),
        )
        .order_by(Pledge.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )


_CLAIM_COLUMNS = (
    Pledge.id,
    Pledge.public_id,
    Pledge.amount,
    Pledge.currency,
    Pledge.provider_customer_id,
    Pledge.provider_payment_method_id,
    Pledge.charge_key,
    Pledge.charge_attempts,
)


def claim_batch(campaign_id: int, size: int) -> list[Claim]:
    """Claim up to `size` pledges to charge; commits, so the keys are stored first."""
    now = utcnow()
    lease = now - timedelta(seconds=current_app.config["CHARGE_LEASE_SECONDS"])
    # Crashed attempts first: same key, and a lookup at the provider before any call.
    stale = (
        select(Pledge.id)
        .where(
            Pledge.campaign_id == campaign_id,
            Pledge.status == PledgeStatus.CHARGING,
            Pledge.charging_since <= lease,
        )
        .order_by(Pledge.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    recovered = db.session.execute(
        update(Pledge)
        .where(
            Pledge.id.in_(stale.scalar_subquery()),
            Pledge.status == PledgeStatus.CHARGING,
            Pledge.charging_since <= lease,
        )
        .values(charging_since=now)
        .returning(*_CLAIM_COLUMNS)
        .execution_options(synchronize_session=False)
    ).all()
    fresh = []
    if len(recovered) < size:
        next_attempt = Pledge.charge_attempts + 1
        fresh = db.session.execute(
            update(Pledge)
            .where(
                Pledge.id.in_(
                    _claimable(campaign_id, now, size - len(recovered)).scalar_subquery()
                ),
                Pledge.status.in_([PledgeStatus.ACTIVE, PledgeStatus.FAILED]),
            )
            .values(
                status=PledgeStatus.CHARGING,
                charge_attempts=next_attempt,
                charge_key=literal("pledge-")
                + cast(Pledge.id, String)
                + literal("-attempt-")
                + cast(next_attempt, String),
                charging_since=now,
                retry_requested=False,
            )
            .returning(*_CLAIM_COLUMNS)
            .execution_options(synchronize_session=False)
        ).all()
        if fresh:
            db.session.execute(
                insert(PledgeEvent),
                [
                    {
                        "pledge_id": row.id,
                        "kind": "charge_claimed",
                        "to_status": "charging",
                        "amount": row.amount,
                        "detail": row.charge_key,
                        "created_at": now,
                    }
                    for row in fresh
                ],
            )
    db.session.commit()
    return [_claim(row, recovering=True) for row in recovered] + [
        _claim(row, recovering=False) for row in fresh
    ]


def claim_for_authentication(pledge_id: int) -> Claim | None:
    """The supporter is here to authenticate: claim their pledge for an on-session
    charge (a new attempt, so a new key). Commits."""
    next_attempt = Pledge.charge_attempts + 1
    row = db.session.execute(
        update(Pledge)
        .where(Pledge.id == pledge_id, Pledge.status == PledgeStatus.NEEDS_AUTHENTICATION)
        .values(
            status=PledgeStatus.CHARGING,
            charge_attempts=next_attempt,
            charge_key=literal("pledge-")
            + cast(Pledge.id, String)
            + literal("-attempt-")
            + cast(next_attempt, String),
            charging_since=utcnow(),
        )
        .returning(*_CLAIM_COLUMNS)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        db.session.rollback()
        return None
    db.session.add(
        PledgeEvent(
            pledge_id=pledge_id,
            kind="charge_claimed_on_session",
            to_status="charging",
            amount=row.amount,
            detail=row.charge_key,
        )
    )
    db.session.commit()
    claim = _claim(row, recovering=False)
    return Claim(**{**claim.__dict__, "on_session": True})


def _claim(row, recovering: bool) -> Claim:
    return Claim(
        pledge_id=row.id,
        public_id=row.public_id,
        amount=row.amount,
        currency=row.currency,
        customer_id=row.provider_customer_id or "",
        payment_method_id=row.provider_payment_method_id or "",
        charge_key=row.charge_key,
        attempt=row.charge_attempts,
        recovering=recovering,
    )


# ---- Calling the provider ------------------------------------------------------------


class RateLimiter:
    """At most `rate` provider calls in any one-second window from this process, spaced
    evenly. Spacing alone is not enough: a thread that wakes late (the GIL, the
    scheduler) would bunch calls, so the window is also counted at the moment each
    call really starts."""

    def __init__(self, rate: int):
        self.rate = rate
        self.interval = 1.0 / rate
        self.lock = threading.Lock()
        self.next_slot = time.monotonic()
        self.recent: deque[float] = deque()

    def wait(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                while self.recent and self.recent[0] <= now - 1.0:
                    self.recent.popleft()
                if now >= self.next_slot and len(self.recent) < self.rate:
                    self.recent.append(now)
                    self.next_slot = max(self.next_slot + self.interval, now)
                    return
                delay = self.next_slot - now
                if len(self.recent) >= self.rate:
                    delay = max(delay, self.recent[0] + 1.0 - now)
            time.sleep(max(delay, 0.001))


_limiters: dict[int, RateLimiter] = {}


def _limiter() -> RateLimiter:
    rate = current_app.config["SETTLEMENT_RATE_LIMIT"]
    if rate not in _limiters:
        _limiters[rate] = RateLimiter(rate)
    return _limiters[rate]


def call_provider(backend, limiter: RateLimiter, claim: Claim) -> ChargeResult | None:
    """Ask the provider to charge (or, after a crash, whether it already did).

    Returns None when the provider could not be reached: the pledge stays `charging`
    with its key, and a later claim finishes it with the same key.
    """
    for attempt in range(3):
        try:
            if claim.recovering:
                limiter.wait()
                found = backend.find_charge(claim.public_id, claim.customer_id)
                if found is not None:
                    return found
            limiter.wait()
            return backend.charge(
                pledge_ref=claim.public_id,
                amount=Money(claim.amount, claim.currency),
                customer_id=claim.customer_id,
                payment_method_id=claim.payment_method_id,
                idempotency_key=claim.charge_key,
                on_session=claim.on_session,
            )
        except BackendError as exc:
            log.warning("charge of pledge %s: provider error (%s); retrying", claim.pledge_id, exc)
            time.sleep(0.5 * (attempt + 1))
    return None


def _fault_point() -> None:
    """Fault injection for the crash tests: COUNTERFUND_FAULT_KILL_RATE=0.02 makes the
    worker die by SIGKILL right after a provider call, before recording it. Inside an
    RQ work horse (its own process group) the worker that forked it dies too, as on a
    machine crash."""
    rate = float(os.environ.get("COUNTERFUND_FAULT_KILL_RATE") or 0)
    if rate and random.random() < rate:  # noqa: S311 - not cryptography
        if os.environ.get("RQ_WORKER_ID"):
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def kill_once_for_tests(variable: str) -> None:
    """Fault injection for the resilience tests: when the environment names a marker
    file that does not exist yet, create it and die by SIGKILL (worker and work horse)."""
    marker = os.environ.get(variable)
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        if os.environ.get("RQ_WORKER_ID"):
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


RECORD_GROUP = 100


def charge_claims(claims: list[Claim]) -> dict[str, int]:
    """Call the provider for many claims at once (bounded concurrency and rate) and
    record the answers as they arrive. Successful charges are recorded in groups (one
    transaction per group, on a recorder thread, overlapping the calls still in
    flight); declines and other outcomes one by one."""
    app = current_app._get_current_object()
    backend = get_backend()
    limiter = _limiter()
    counts: dict[str, int] = defaultdict(int)
    callers = min(app.config["SETTLEMENT_CONCURRENCY"], len(claims)) or 1

    def record(group: list[tuple[Claim, ChargeResult]], others: list) -> dict[str, int]:
        tally: dict[str, int] = defaultdict(int)
        with app.test_request_context("/", base_url=app.config["PUBLIC_URL"]):
            won = record_charges(group)
            tally["charged"] += won
            tally["already_recorded"] += len(group) - won
            for claim, result in others:
                tally[record_result(claim, result) if result else "unreachable"] += 1
        return tally

    with (
        ThreadPoolExecutor(max_workers=callers, thread_name_prefix="charge") as calling,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="record") as recording,
    ):
        calls = {calling.submit(call_provider, backend, limiter, c): c for c in claims}
        group, others, recorded = [], [], []
        for done, future in enumerate(as_completed(calls), start=1):
            claim, result = calls[future], future.result()
            _fault_point()
            if result is not None and result.status == "succeeded":
                group.append((claim, result))
            else:
                others.append((claim, result))
            if len(group) >= RECORD_GROUP or done == len(calls):
                recorded.append(recording.submit(record, group, others))
                group, others = [], []
        for future in recorded:
            for outcome, count in future.result().items():
                counts[outcome] += count
    return {outcome: count for outcome, count in counts.items() if count}


# ---- Recording -----------------------------------------------------------------------


def record_result(claim: Claim, result: ChargeResult) -> str:
    """Apply the provider's answer in one transaction; returns the outcome. Commits.

    Only the transaction whose guarded UPDATE finds the pledge still `charging` under
    this claim's key records anything, ledger included.
    """
    now = utcnow()
    pledge = db.session.get(Pledge, claim.pledge_id)
    campaign = pledge.campaign
    guard = and_(
        Pledge.id == claim.pledge_id,
        Pledge.status == PledgeStatus.CHARGING,
        Pledge.charge_key == claim.charge_key,
    )
    window_end = (campaign.decided_at or now) + timedelta(
        seconds=current_app.config["RETRY_WINDOW"]
    )
    if result.status == "succeeded":
        values = {
            "status": PledgeStatus.CHARGED,
            "provider_charge_id": result.charge_id,
            "charged_amount": result.amount,
            "fee_amount": result.fee,
            "charged_at": now,
            "failure_code": "",
        }
        outcome = "charged"
    elif result.status == "requires_action":
        values = {
            "status": PledgeStatus.NEEDS_AUTHENTICATION,
            "failure_code": result.decline_code or "authentication_required",
            "retry_until": func.coalesce(Pledge.retry_until, window_end),
        }
        outcome = "needs_authentication"
    elif pledge.retry_until is not None and now >= pledge.retry_until:
        values = {"status": PledgeStatus.DROPPED, "failure_code": result.decline_code}
        outcome = "dropped"
    else:
        values = {
            "status": PledgeStatus.FAILED,
            "failure_code": result.decline_code,
            "retry_until": func.coalesce(Pledge.retry_until, window_end),
            "next_reminder_at": now + timedelta(seconds=current_app.config["REMINDER_INTERVAL"]),
        }
        outcome = "failed"

    # One transaction: the state, its event, the ledger and the email.
    row = db.session.execute(
        update(Pledge)
        .where(guard)
        .values(**values)
        .returning(Pledge.retry_until)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        db.session.rollback()
        if result.status == "succeeded":
            return follow_lost_charge(claim, result)
        return "already_recorded"
    else:
        # Keep the loaded pledge in step without reading it back.
        for name, value in values.items():
            set_committed_value(pledge, name, row.retry_until if name == "retry_until" else value)
        db.session.add(
            PledgeEvent(
                pledge_id=pledge.id,
                kind=f"charge_{outcome}",
                from_status="charging",
                to_status=values["status"],
                amount=result.amount,
                detail=result.decline_code or "",
            )
        )
        if outcome == "charged":
            _write_charge_to_ledger(pledge, campaign, result)
            db.session.execute(
                update(Campaign)
                .where(Campaign.id == campaign.id)
                .values(collected_amount=Campaign.collected_amount + result.amount)
                .execution_options(synchronize_session=False)
            )
        _email_outcome(pledge, outcome)
    db.session.commit()
    return outcome


def follow_lost_charge(claim: Claim, result: ChargeResult) -> str:
    """The provider charged, but the pledge is no longer `charging` under this claim's
    key. Money that moved must never vanish: if this charge is already recorded, there
    is nothing to do; otherwise the ledger and the pledge follow the money (the charge,
    its fee and the collected total are recorded) and, since the pledge had left
    settlement, the charge is refunded at once, in the ledger too; the supporter and
    operators are told. Commits. Returns "already_recorded" or "followed"."""
    from payments.refunds import refund

    pledge = db.session.get(Pledge, claim.pledge_id)
    db.session.refresh(pledge)
    if pledge.provider_charge_id == result.charge_id:
        return "already_recorded"
    was = pledge.status
    if was in (PledgeStatus.CHARGED, PledgeStatus.REFUNDED, PledgeStatus.CHARGING):
        # A second charge for one pledge: it never belonged to it. Refund it at the
        # provider under a key of its own and tell operators (reconciliation lists it).
        get_backend().refund(
            result.charge_id, Money(result.amount, result.currency), f"extra-{result.charge_id}"
        )
        _tell_operators(pledge, f"second charge {result.charge_id} refunded at the provider")
        db.session.commit()
        return "refunded_extra"
    now = utcnow()
    moved = db.session.execute(
        update(Pledge)
        .where(Pledge.id == pledge.id, Pledge.status == was)
        .values(
            status=PledgeStatus.CHARGED,
            provider_charge_id=result.charge_id,
            charged_amount=result.amount,
            fee_amount=result.fee,
            charged_at=now,
            charge_key=claim.charge_key,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        db.session.rollback()
        return follow_lost_charge(claim, result)  # it moved again meanwhile: look again
    db.session.add(
        PledgeEvent(
            pledge_id=pledge.id,
            kind="charge_recorded_late",
            from_status=was,
            to_status=PledgeStatus.CHARGED,
            amount=result.amount,
            detail=result.charge_id,
        )
    )
    _write_charge_to_ledger(pledge, pledge.campaign, result)
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == pledge.campaign_id)
        .values(collected_amount=Campaign.collected_amount + result.amount)
        .execution_options(synchronize_session=False)
    )
    if result.fee:
        # The supporter gets everything back and the campaign never paid for a charge
        # it should not have had: the platform covers the processor's fee.
        fee = Money(result.fee, result.currency)
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=pledge.campaign_id,
            reference=public_reference("fee-cover", pledge.id),
            postings=[(ledger.PLATFORM, -fee), (ledger.campaign_account(pledge.campaign_id), fee)],
            counterparty="platform",
            memo="The platform covers the fee of a charge refunded at once",
        )
    db.session.commit()
    db.session.refresh(pledge)
    refund(pledge, "Charged after the pledge had left settlement; refunded at once")
    _tell_operators(pledge, f"charge recorded after the pledge was {was}; refunded")
    subject = _l("Your pledge to %(t)s was refunded", t=pledge.campaign.title)
    body = _l(
        "Your pledge of %(m)s for “%(t)s” was charged by mistake after it had ended. "
        "We have refunded the full amount; your bank shows it within a few days.",
        m=pledge.charged.format(),
        t=pledge.campaign.title,
    )
    outbox.queue(pledge.email, str(subject), str(body), topic="pledge-refunded")
    db.session.commit()
    log.error("settlement: pledge %s was %s when its charge was recorded", pledge.id, was)
    return "followed"


def _tell_operators(pledge: Pledge, what: str) -> None:
    """Operators learn of money that needed a person's eyes (`flask failed-jobs`, and
    OPERATOR_EMAIL when set); the record names our pledge id only."""
    from core.jobs import JobFailure

    db.session.add(
        JobFailure(job="settlement.follow_lost_charge", arguments=f"({pledge.id},)", error=what)
    )
    address = current_app.config.get("OPERATOR_EMAIL")
    if address:
        outbox.queue(
            address, f"Counterfund: pledge {pledge.id} needs a look", what, topic="operator-alert"
        )


def _ledger_entries(pledge: Pledge, campaign_id: int, result: ChargeResult) -> list:
    account = ledger.campaign_account(campaign_id)
    amount = Money(result.amount, result.currency)
    entries = [
        ledger.Entry(
            EntryKind.PLEDGE_CHARGE,
            campaign_id,
            public_reference("charge", pledge.id),
            ((ledger.SUPPORTERS, -amount), (account, amount)),
            public_counterparty(pledge),
            "Pledge charged at the deadline",
        )
    ]
    if result.fee:
        fee = Money(result.fee, result.currency)
        entries.append(
            ledger.Entry(
                EntryKind.PROCESSOR_FEE,
                campaign_id,
                public_reference("fee", pledge.id),
                ((account, -fee), (ledger.PROCESSOR_FEES, fee)),
                "payment processor",
                "Card processing fee",
            )
        )
    return entries


def _write_charge_to_ledger(pledge: Pledge, campaign: Campaign, result: ChargeResult) -> None:
    ledger.record_many(_ledger_entries(pledge, campaign.id, result))


def _email_outcome(pledge: Pledge, outcome: str) -> None:
    message = _outcome_email(pledge, outcome)
    if message is not None:
        outbox.queue(*message)


def _outcome_email(pledge: Pledge, outcome: str) -> tuple[str, str, str, str] | None:
    from payments.services import manage_url

    campaign = pledge.campaign
    link = manage_url(pledge, external=True)
    if outcome == "charged":
        subject = _l("Receipt: your pledge to %(t)s", t=campaign.title)
        body = _l(
            "“%(t)s” was funded and your pledge of %(m)s has been charged.\n\n"
            "Your receipt, and proof that the charge is on the public ledger:\n%(link)s",
            t=campaign.title,
            m=pledge.charged.format(),
            link=link,
        )
    elif outcome == "failed":
        subject = _l("Action needed: your card was declined for %(t)s", t=campaign.title)
        body = _l(
            "“%(t)s” was funded, but your card was declined (%(code)s).\n\n"
            "Please update your card before %(until)s UTC so your pledge of %(m)s "
            "counts:\n%(link)s",
            t=campaign.title,
            code=pledge.failure_code,
            until=pledge.retry_until.strftime("%Y-%m-%d %H:%M"),
            m=pledge.money.format(),
            link=link,
        )
    elif outcome == "needs_authentication":
        subject = _l("Please confirm your payment for %(t)s", t=campaign.title)
        body = _l(
            "Your bank asks you to confirm the payment of %(m)s for “%(t)s”. "
            "Confirm it here before %(until)s UTC:\n%(link)s",
            t=campaign.title,
            m=pledge.money.format(),
            until=pledge.retry_until.strftime("%Y-%m-%d %H:%M"),
            link=link,
        )
    elif outcome == "dropped":
        subject = _l("Your pledge to %(t)s could not be collected", t=campaign.title)
        body = _l(
            "We could not collect your pledge of %(m)s for “%(t)s”, so it has been "
            "dropped. You have not been charged.",
            t=campaign.title,
            m=pledge.money.format(),
        )
    else:
        return None
    return pledge.email, str(subject), str(body), f"pledge-{outcome}"


def record_charges(pairs: list[tuple[Claim, ChargeResult]]) -> int:
    """Record many successful charges in one transaction, in a few statements: the
    pledges' guarded state change, their events, the ledger, the campaign's collected
    total and the receipts. Returns how many this transaction won. Commits."""
    if not pairs:
        return 0
    now = utcnow()
    by_id = {claim.pledge_id: (claim, result) for claim, result in pairs}
    # Lock the rows (PostgreSQL), then keep those still charging under the same key.
    current = db.session.execute(
        select(Pledge.id, Pledge.status, Pledge.charge_key)
        .where(Pledge.id.in_(by_id))
        .with_for_update()
    ).all()
    winners = [
        row.id
        for row in current
        if row.status == PledgeStatus.CHARGING and row.charge_key == by_id[row.id][0].charge_key
    ]
    losers = [pid for pid in by_id if pid not in winners]
    if losers:
        # Settled one by one: each lost charge is found recorded, or followed.
        db.session.rollback()
        won = sum(follow_lost_charge(*by_id[pid]) == "charged" for pid in losers)
        return won + record_charges([by_id[pid] for pid in winners])
    table = Pledge.__table__
    moved = (
        db.session.connection()
        .execute(
            table.update()
            .where(
                table.c.id == bindparam("pid"),
                table.c.status == PledgeStatus.CHARGING.value,
                table.c.charge_key == bindparam("key"),
            )
            .values(
                status=PledgeStatus.CHARGED.value,
                provider_charge_id=bindparam("b_charge"),
                charged_amount=bindparam("b_amount"),
                fee_amount=bindparam("b_fee"),
                charged_at=now,
                failure_code="",
            ),
            [
                {
                    "pid": pid,
                    "key": by_id[pid][0].charge_key,
                    "b_charge": by_id[pid][1].charge_id,
                    "b_amount": by_id[pid][1].amount,
                    "b_fee": by_id[pid][1].fee,
                }
                for pid in winners
            ],
        )
        .rowcount
    )
    if moved != len(winners):
        # Someone recorded part of the group meanwhile (SQLite has no row locks to stop
        # them): start again one by one, each guarded on its own.
        db.session.rollback()
        return sum(record_result(*by_id[pid]) == "charged" for pid in winners)
    pledges = db.session.scalars(
        select(Pledge).where(Pledge.id.in_(winners)).order_by(Pledge.id)
    ).all()
    db.session.execute(
        insert(PledgeEvent),
        [
            {
                "pledge_id": p.id,
                "kind": "charge_charged",
                "from_status": "charging",
                "to_status": "charged",
                "amount": by_id[p.id][1].amount,
                "detail": "",
                "created_at": now,
            }
            for p in pledges
        ],
    )
    entries, collected, emails = [], defaultdict(int), []
    for pledge in pledges:
        _claim, result = by_id[pledge.id]
        entries.extend(_ledger_entries(pledge, pledge.campaign_id, result))
        collected[pledge.campaign_id] += result.amount
        emails.append(_outcome_email(pledge, "charged"))
    ledger.record_many(entries)
    for campaign_id, amount in collected.items():
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(collected_amount=Campaign.collected_amount + amount)
            .execution_options(synchronize_session=False)
        )
    outbox.queue_many(emails)
    db.session.commit()
    return len(pledges)


# ---- Retries, reminders, the end of the window ---------------------------------------


def send_reminders(campaign_id: int) -> int:
    now = utcnow()
    interval = timedelta(seconds=current_app.config["REMINDER_INTERVAL"])
    due = db.session.scalars(
        select(Pledge).where(
            Pledge.campaign_id == campaign_id,
            Pledge.status.in_([PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION]),
            Pledge.next_reminder_at <= now,
            Pledge.retry_until > now,
        )
    ).all()
    sent = 0
    for pledge in due:
        moved = db.session.execute(
            update(Pledge)
            .where(Pledge.id == pledge.id, Pledge.next_reminder_at == pledge.next_reminder_at)
            .values(next_reminder_at=now + interval)
            .execution_options(synchronize_session=False)
        ).rowcount
        if moved:
            _email_outcome(
                pledge, "failed" if pledge.status == PledgeStatus.FAILED else "needs_authentication"
            )
            db.session.add(
                PledgeEvent(pledge_id=pledge.id, kind="reminder_sent", amount=pledge.amount)
            )
            sent += 1
    db.session.commit()
    return sent


def drop_expired_authentications(campaign_id: int) -> int:
    now = utcnow()
    expired = db.session.scalars(
        select(Pledge).where(
            Pledge.campaign_id == campaign_id,
            Pledge.status == PledgeStatus.NEEDS_AUTHENTICATION,
            Pledge.retry_until <= now,
        )
    ).all()
    dropped = 0
    for pledge in expired:
        moved = db.session.execute(
            update(Pledge)
            .where(Pledge.id == pledge.id, Pledge.status == PledgeStatus.NEEDS_AUTHENTICATION)
            .values(status=PledgeStatus.DROPPED)
            .execution_options(synchronize_session=False)
        ).rowcount
        if moved:
            db.session.add(
                PledgeEvent(
                    pledge_id=pledge.id,
                    kind="dropped",
                    from_status="needs_authentication",
                    to_status="dropped",
                    amount=pledge.amount,
                )
            )
            _email_outcome(pledge, "dropped")
            dropped += 1
    db.session.commit()
    return dropped


def finish_if_done(campaign_id: int) -> bool:
    """settling → settled, unfunded → released, once no pledge is open any more."""
    still_open = db.session.scalar(
        select(func.count(Pledge.id)).where(
            Pledge.campaign_id == campaign_id, Pledge.status.in_(OPEN_STATUSES)
        )
    )
    if still_open:
        return False
    done = db.session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status.in_(
                [CampaignStatus.FUNDED, CampaignStatus.SETTLING, CampaignStatus.UNFUNDED]
            ),
        )
        .values(
            status=case(
                (Campaign.status == CampaignStatus.UNFUNDED.value, CampaignStatus.RELEASED.value),
                else_=CampaignStatus.SETTLED.value,
            ),
            settled_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(done)


# ---- Releasing -----------------------------------------------------------------------


def release_suspended_at_deadline() -> list[int]:
    """A campaign still suspended at its deadline is not decided but released: nobody
    is charged, and restoring it later brings it back released (suspended_from), never
    live past its deadline. Returns the campaigns it released. Commits."""
    now = utcnow()
    released = db.session.scalars(
        update(Campaign)
        .where(
            Campaign.status == CampaignStatus.SUSPENDED,
            or_(
                Campaign.suspended_from.is_(None),
                Campaign.suspended_from == CampaignStatus.LIVE,
            ),
            Campaign.deadline <= now,
        )
        .values(suspended_from=CampaignStatus.RELEASED, decided_at=now)
        .returning(Campaign.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return list(released)


def with_open_pledges(*conditions) -> list[int]:
    """Campaigns matching `conditions` that still hold active or pending pledges."""
    return list(
        db.session.scalars(
            select(Campaign.id).where(
                *conditions,
                Campaign.id.in_(
                    select(Pledge.campaign_id).where(
                        Pledge.status.in_([PledgeStatus.ACTIVE, PledgeStatus.PENDING])
                    )
                ),
            )
        )
    )


def released_with_open_pledges() -> list[int]:
    """Released campaigns (suspended at their deadline, restored or not) whose pledges
    are not all released yet (a crash half-way, or a restore before the sweep)."""
    return with_open_pledges(
        or_(
            Campaign.status == CampaignStatus.RELEASED,
            and_(
                Campaign.status == CampaignStatus.SUSPENDED,
                Campaign.suspended_from == CampaignStatus.RELEASED,
            ),
        )
    )


RELEASE_REASONS = {
    "unfunded": _l("did not reach its goal"),
    "cancelled": _l("was cancelled by its organizers"),
    "suspended": _l("was suspended by the platform's moderators at its deadline"),
}


def release_batch(campaign_id: int, size: int, reason: str) -> int:
    """Release up to `size` open pledges: detach the card, then mark them released."""
    backend = get_backend()
    pledges = db.session.scalars(
        select(Pledge)
        .where(
            Pledge.campaign_id == campaign_id,
            Pledge.status.in_([PledgeStatus.ACTIVE, PledgeStatus.PENDING]),
        )
        .order_by(Pledge.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    ).all()
    released = 0
    for pledge in pledges:
        if pledge.provider_customer_id:
            try:
                backend.release(pledge.provider_customer_id, None)
            except BackendError:
                log.warning("release of pledge %s failed; retried later", pledge.id)
                continue
        was = pledge.status
        # An active pledge is released; a pending one (its card never saved) simply
        # ends cancelled. Either way the move has its event.
        to = PledgeStatus.RELEASED if was == PledgeStatus.ACTIVE else PledgeStatus.CANCELLED
        values = {"status": to}
        if to == PledgeStatus.CANCELLED:
            values["cancelled_at"] = utcnow()
        moved = db.session.execute(
            update(Pledge)
            .where(Pledge.id == pledge.id, Pledge.status == was)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if moved:
            db.session.add(
                PledgeEvent(
                    pledge_id=pledge.id,
                    kind="released" if to == PledgeStatus.RELEASED else "cancelled_unfinished",
                    from_status=was,
                    to_status=to,
                    amount=pledge.amount,
                    detail=reason,
                )
            )
        if moved and to == PledgeStatus.RELEASED:
            outbox.queue(
                pledge.email,
                str(_l("%(t)s: you will not be charged", t=pledge.campaign.title)),
                str(
                    _l(
                        "“%(t)s” %(why)s, so your pledge of %(m)s has been released and your "
                        "card will not be charged.",
                        t=pledge.campaign.title,
                        why=RELEASE_REASONS[reason],
                        m=pledge.money.format(),
                    )
                ),
                topic="pledge-released",
            )
            released += 1
    db.session.commit()
    return released


def progress(campaign_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(Pledge.status, func.count(Pledge.id))
        .where(Pledge.campaign_id == campaign_id, Pledge.status != PledgeStatus.PENDING)
        .group_by(Pledge.status)
    ).all()
    return {status: count for status, count in rows}  # noqa: C416 - Row pairs

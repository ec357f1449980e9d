"""Calling the provider: bounded concurrency, a process-wide rate limit, retries on
unreachable, and the answers handed to recording as they arrive."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Protocol

from flask import current_app

from core.extensions import current_app_object
from payments.backends import get_backend
from payments.backends.base import BackendError, ChargeResult, PaymentBackend
from payments.settlement.claiming import Claim, claim_for_authentication
from payments.settlement.recording import record_charges, record_result

log = logging.getLogger(__name__)


class CallLimiter(Protocol):
    def wait(self) -> None:
        """Return when one more provider call may start."""


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


# Each caller reserves the next free slot, `interval` microseconds after the previous
# one, by Redis's own clock: calls from every process are spaced evenly, never bunched.
_NEXT_SLOT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
redis.call('SET', KEYS[1], slot + tonumber(ARGV[1]), 'PX', 60000)
return slot - now
"""


class SharedRateLimiter:
    """At most `rate` provider calls in any one-second window from every process that
    shares this Redis (web workers, RQ workers, CLI commands), spaced evenly. Like the
    in-process limiter, spacing alone is not enough (a thread that wakes late bunches
    with the next), so each call also takes its place in `limits`' moving window,
    counted in Redis, atomically, as it starts."""

    KEY = ("counterfund", "provider-calls")

    def __init__(self, redis_url: str, rate: int):
        from limits import RateLimitItemPerSecond
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter
        from redis import Redis

        self.rate = rate
        self.item = RateLimitItemPerSecond(rate)
        self.window = MovingWindowRateLimiter(storage_from_string(redis_url))
        self.next_slot = Redis.from_url(redis_url).register_script(_NEXT_SLOT)
        self.interval_us = 1_000_000 // rate
        self.fallback = RateLimiter(rate)

    def wait(self) -> None:
        from redis.exceptions import RedisError

        try:
            self._wait_in_redis()
        except RedisError:
            # Redis is down: each process keeps the limit alone until it is back (the
            # provider's own refusals are retried); settlement does not stop for it.
            log.warning("settlement: Redis unreachable; this process limits itself alone")
            self.fallback.wait()

    def _wait_in_redis(self) -> None:
        delay_us = int(
            self.next_slot(keys=["counterfund:provider-next-slot"], args=[self.interval_us])
        )
        if delay_us > 0:
            time.sleep(delay_us / 1_000_000)
        while not self.window.hit(self.item, *self.KEY):
            stats = self.window.get_window_stats(self.item, *self.KEY)
            time.sleep(min(max(stats.reset_time - time.time(), 0.001), 0.05))


_limiters: dict[tuple[str, int], CallLimiter] = {}


def limiter() -> CallLimiter:
    """The limiter for the configured SETTLEMENT_RATE_LIMIT: shared by every process
    through Redis when REDIS_URL is set, else this process's own."""
    rate = current_app.config["SETTLEMENT_RATE_LIMIT"]
    redis_url = current_app.config.get("REDIS_URL") or ""
    if (redis_url, rate) not in _limiters:
        _limiters[(redis_url, rate)] = (
            SharedRateLimiter(redis_url, rate) if redis_url else RateLimiter(rate)
        )
    return _limiters[(redis_url, rate)]


def call_provider(
    backend: PaymentBackend, rate_limiter: CallLimiter, claim: Claim
) -> ChargeResult | None:
    """Ask the provider to charge (or, after a crash, whether it already did).

    Returns None when the provider could not be reached: the pledge stays `charging`
    with its key, and a later claim finishes it with the same key.
    """
    for attempt in range(3):
        try:
            if claim.recovering:
                rate_limiter.wait()
                found = backend.find_charge(claim.public_id, claim.customer_id)
                if found is not None:
                    return found
            rate_limiter.wait()
            return backend.charge(
                pledge_ref=claim.public_id,
                amount=claim.amount,
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
    app = current_app_object()
    backend = get_backend()
    rate_limiter = limiter()
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
        calls = {calling.submit(call_provider, backend, rate_limiter, c): c for c in claims}
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
        for tallied in recorded:
            for outcome, count in tallied.result().items():
                counts[outcome] += count
    return {outcome: count for outcome, count in counts.items() if count}


def charge_on_session(pledge_id: int) -> str | None:
    """The supporter is present to authenticate a payment their bank asked about: claim
    the pledge, charge it on-session and record the answer. Returns the outcome
    ("charged", "failed", "unreachable", …), or None when the pledge was not waiting
    for them (settled meanwhile, or a second tab)."""
    claim = claim_for_authentication(pledge_id)
    if claim is None:
        return None
    result = call_provider(get_backend(), limiter(), claim)
    return record_result(claim, result) if result else "unreachable"

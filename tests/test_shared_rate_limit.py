"""One provider rate limit for every process (issue 17): with REDIS_URL, settlement's
limiter is shared through Redis, so three worker processes together never start more
calls in a second than SETTLEMENT_RATE_LIMIT allows. How close they get to the limit
is a speed goal, measured by bench/settlement.py --processes 3, not here."""

from __future__ import annotations

import multiprocessing
import threading
import time

RATE = 20


def _calls(redis_url: str, seconds: float, out) -> None:
    """One worker process: 4 threads calling as fast as the limiter lets them."""
    from payments.settlement import SharedRateLimiter

    limiter = SharedRateLimiter(redis_url, RATE)
    stamps: list[float] = []
    lock = threading.Lock()
    end = time.time() + seconds

    def run():
        while time.time() < end:
            limiter.wait()
            with lock:
                stamps.append(time.time())

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(stamps)


def _busiest(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    busiest, left = 0, 0
    for right, moment in enumerate(stamps):
        while stamps[left] <= moment - window:
            left += 1
        busiest = max(busiest, right - left + 1)
    return busiest


def test_three_processes_share_one_limit(redis_url):
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_calls, args=(redis_url, 3.0, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    stamps = [stamp for _ in workers for stamp in out.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    # Calls are stamped just after the limiter let them start; a window a little under
    # a second leaves room for that delay and must hold no more than the limit.
    assert _busiest(stamps, 0.98) <= RATE
    # Each process alone would have made RATE per second: together they did not.
    assert len(stamps) <= RATE * 4 + RATE


def test_the_limiter_is_shared_only_with_redis(make_app, redis_url):
    from payments.settlement import RateLimiter, SharedRateLimiter, limiter

    shared = make_app(REDIS_URL=redis_url)
    with shared.app_context():
        assert isinstance(limiter(), SharedRateLimiter)
    alone = make_app()
    with alone.app_context():
        assert isinstance(limiter(), RateLimiter)


def test_with_redis_down_each_process_limits_itself():
    """Settlement does not stop when Redis does: the limiter falls back to this
    process's own, still at the configured rate."""
    from payments.settlement import SharedRateLimiter

    limiter = SharedRateLimiter("redis://127.0.0.1:1/0", RATE)
    started = time.monotonic()
    for _ in range(RATE + 1):
        limiter.wait()
    assert time.monotonic() - started >= 0.9  # RATE + 1 calls cannot fit in a second

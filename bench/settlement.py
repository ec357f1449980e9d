"""Settlement throughput and memory, with the simulated provider on PostgreSQL.

    .venv/bin/python bench/settlement.py --pledges 100000
    .venv/bin/python bench/settlement.py --pledges 3000 --latency-ms 250 --provider-limit 100
    .venv/bin/python bench/settlement.py --pledges 10000 --recurring
    .venv/bin/python bench/settlement.py --pledges 6000 --latency-ms 250 --provider-limit 100 \
        --processes 3 --rate-limit 100

The first form settles N pledges as fast as the provider answers and reports pledges/s
and the process's peak memory (run it at two sizes: memory must not grow with N,
because claims stream in batches). The second gives every provider call 250 ms of
latency and makes the provider refuse more than 100 calls in any second (Stripe's
live-mode limit), and reports the sustained request rate Counterfund achieves. The
third makes them standing pledges to a weekly campaign whose first period has just
ended, and times deciding the period (opening one charge per standing pledge) and
charging it. The fourth settles with three worker processes at once, sharing one
provider limit through Redis (BENCH_REDIS_URL, db 7 by default: its limiter key is
reset); calls over the provider's limit are counted from the provider's own records
of every process's calls.
Uses BENCH_DATABASE_URL (default: a counterfund_bench database on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def reset_database(url: str) -> None:
    admin, name = url.rsplit("/", 1)
    with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(app, count: int, recurring: bool = False) -> int:
    """A funded campaign with `count` active pledges whose 4242 cards the provider holds
    (with `recurring`: standing pledges to a weekly campaign whose first period just
    ended). Bulk-inserted on both sides: seeding is not what is measured."""
    from sqlalchemy import insert

    from accounts.models import User
    from campaigns.models import BudgetLine, Campaign, Organizer
    from core.clock import utcnow
    from core.extensions import db
    from payments.models import Pledge

    with app.app_context():
        user = User(email="org@example.org", display_name="Org", password_hash="x")
        db.session.add(user)
        db.session.flush()
        campaign = Campaign(
            slug="big",
            title="Big",
            summary="s",
            story="s",
            kind="strike_fund",
            currency="EUR",
            goal_amount=100,
            funding_model="all_or_nothing",
            deadline=utcnow() - timedelta(minutes=1),
            status="live",
            launched_at=utcnow(),
        )
        if recurring:
            from campaigns.periods import Recurrence

            campaign.launched_at = utcnow() - timedelta(weeks=1, minutes=1)
            campaign.deadline = campaign.launched_at + timedelta(weeks=4)
            campaign.funding_model = "flexible"
            campaign.recurrence = Recurrence(interval="week", max_periods=4)
        campaign.organizers = [Organizer(user_id=user.id, role="owner")]
        campaign.budget_lines = [BudgetLine(position=0, label="x", amount=100, required=True)]
        db.session.add(campaign)
        db.session.commit()
        campaign_id = campaign.id

        provider = sqlite3.connect(app.config["SIMULATED_PROVIDER_DB"])
        app.extensions["payment_backend"].provider._connection()  # creates the schema
        now = time.time()
        total = 0
        for start in range(0, count, 10_000):
            rows, customers, methods = [], [], []
            for n in range(start, min(count, start + 10_000)):
                ref = f"bench-{n:07d}"
                amount = 500 + (n % 50) * 100
                total += amount
                customers.append((f"cus_{ref}", ref, now))
                methods.append((f"pm_{ref}", f"cus_{ref}", "4242424242424242", "visa", "4242", now))
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
                        "provider_customer_id": f"cus_{ref}",
                        "provider_payment_method_id": f"pm_{ref}",
                        "recurring": recurring,
                        "activated_at": utcnow() - timedelta(days=7 if recurring else 0),
                    }
                )
            provider.executemany("INSERT INTO customers VALUES (?, ?, ?)", customers)
            provider.executemany(
                "INSERT INTO payment_methods (id, customer_id, number, brand, last4, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                methods,
            )
            provider.commit()
            db.session.execute(insert(Pledge), rows)
            db.session.commit()
        provider.close()
        db.session.execute(
            Campaign.__table__.update()
            .where(Campaign.id == campaign_id)
            .values(pledged_amount=total, backer_count=count)
        )
        db.session.commit()
        return campaign_id


def settle(app, campaign_id: int) -> tuple[float, Counter]:
    from core.urls import public_request_context
    from payments import settlement

    outcomes: Counter = Counter()
    with app.app_context(), public_request_context():
        from core.extensions import db

        settlement.decide(campaign_id)
        settlement.start_settling(campaign_id)
        db.session.commit()
        started = time.monotonic()
        batch = app.config["SETTLEMENT_BATCH_SIZE"]
        while claims := settlement.claim_batch(campaign_id, batch):
            outcomes.update(settlement.charge_claims(claims))
        elapsed = time.monotonic() - started
        settlement.finish_if_done(campaign_id)
    return elapsed, outcomes


def _settle_in_worker(campaign_id: int, out) -> None:
    """One worker process of --processes: claims and charges until nothing is left."""
    import logging

    from app import create_app
    from core.urls import public_request_context
    from payments import settlement

    logging.disable(logging.INFO)
    app = create_app()
    outcomes: Counter = Counter()
    with app.app_context(), public_request_context():
        batch = app.config["SETTLEMENT_BATCH_SIZE"]
        while claims := settlement.claim_batch(campaign_id, batch):
            outcomes.update(settlement.charge_claims(claims))
    out.put((dict(outcomes), app.extensions["payment_backend"].provider.rate_limited))


def settle_in_processes(app, campaign_id: int, processes: int) -> tuple[float, Counter, int]:
    import multiprocessing

    from core.urls import public_request_context
    from payments import settlement

    with app.app_context(), public_request_context():
        from core.extensions import db

        settlement.decide(campaign_id)
        settlement.start_settling(campaign_id)
        db.session.commit()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [
        context.Process(target=_settle_in_worker, args=(campaign_id, out)) for _ in range(processes)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    outcomes: Counter = Counter()
    refused = 0
    for _ in workers:
        counted, rate_limited = out.get()
        outcomes.update(counted)
        refused += rate_limited
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    with app.app_context(), public_request_context():
        settlement.finish_if_done(campaign_id)
    return elapsed, outcomes, refused


def over_limit(path: str, limit: int) -> int:
    """Calls the provider received while `limit` others had arrived within the second
    before (from its records of every process's calls): what it would refuse."""
    conn = sqlite3.connect(path)
    times = [row[0] for row in conn.execute("SELECT created FROM calls ORDER BY created")]
    conn.close()
    over, left = 0, 0
    for right, moment in enumerate(times):
        while moment - times[left] >= 1.0:
            left += 1
        over += right - left + 1 > limit
    return over


def settle_period(app, campaign_id: int) -> tuple[float, float, Counter]:
    """Decide the first period (opening its charges), then charge them: both timed."""
    from core.urls import public_request_context
    from payments import settlement

    outcomes: Counter = Counter()
    with app.app_context(), public_request_context():
        started = time.monotonic()
        settlement.advance(campaign_id)
        opened = time.monotonic() - started
        started = time.monotonic()
        batch = app.config["SETTLEMENT_BATCH_SIZE"]
        while claims := settlement.claim_batch(campaign_id, batch):
            outcomes.update(settlement.charge_claims(claims))
        elapsed = time.monotonic() - started
        settlement.close_charged_periods(campaign_id)
    return opened, elapsed, outcomes


def provider_rates(path: str) -> tuple[float, int, int]:
    """Sustained calls/s (first to last charge call), and the busiest 1-second window."""
    conn = sqlite3.connect(path)
    times = [
        row[0]
        for row in conn.execute(
            "SELECT created FROM calls WHERE operation = 'charge' ORDER BY created"
        )
    ]
    conn.close()
    if len(times) < 2:
        return 0.0, 0, len(times)
    sustained = (len(times) - 1) / (times[-1] - times[0])
    busiest, left = 0, 0
    for right, moment in enumerate(times):
        while moment - times[left] >= 1.0:
            left += 1
        busiest = max(busiest, right - left + 1)
    return sustained, busiest, len(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pledges", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--provider-limit", type=int, default=0)
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=95,
        help="Counterfund's own limit on provider calls per second",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--recurring", action="store_true", help="standing pledges, one weekly period"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes sharing one limit"
    )
    args = parser.parse_args()

    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counterfund_bench"
    )
    reset_database(url)
    instance = tempfile.mkdtemp(prefix="counterfund-settle-")
    os.environ.update(
        {
            "DATABASE_URL": url,
            "COUNTERFUND_INSTANCE": instance,
            "JOB_RUNNER": "eager",
            "SIMULATED_LATENCY_MS": str(args.latency_ms),
            "SIMULATED_RATE_LIMIT": str(args.provider_limit),
            "SETTLEMENT_RATE_LIMIT": str(args.rate_limit if args.latency_ms else 1_000_000),
            "SETTLEMENT_CONCURRENCY": str(args.concurrency),
            "SETTLEMENT_BATCH_SIZE": str(args.batch),
        }
    )
    if args.processes > 1:
        import redis

        redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
        redis.Redis.from_url(redis_url).flushdb()
        os.environ["REDIS_URL"] = redis_url
    import logging
    import subprocess

    subprocess.run(
        [str(ROOT / ".venv/bin/flask"), "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    from app import create_app

    logging.disable(logging.INFO)
    app = create_app()
    campaign_id = seed(app, args.pledges, recurring=args.recurring)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused_in_workers = None
    if args.recurring:
        opened, elapsed, outcomes = settle_period(app, campaign_id)
        print(f"period decided, {args.pledges} charges opened in {opened:.1f} s")
    elif args.processes > 1:
        elapsed, outcomes, refused_in_workers = settle_in_processes(
            app, campaign_id, args.processes
        )
    else:
        elapsed, outcomes = settle(app, campaign_id)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    provider = app.extensions["payment_backend"].provider
    sustained, busiest, calls = provider_rates(app.config["SIMULATED_PROVIDER_DB"])

    with psycopg.connect(url) as conn:
        charged, collected = conn.execute(
            "SELECT count(*), coalesce(sum(charged_amount), 0) FROM pledges"
            " WHERE status = 'charged'"
        ).fetchone()
        ledger = conn.execute(
            "SELECT coalesce(sum(p.amount), 0) FROM ledger_postings p JOIN ledger_transactions t"
            " ON t.id = p.transaction_id WHERE t.kind = 'pledge_charge'"
            " AND p.account = 'campaign:' || %s",
            (campaign_id,),
        ).fetchone()[0]
        status = conn.execute(
            "SELECT status FROM campaigns WHERE id = %s", (campaign_id,)
        ).fetchone()[0]
        if args.recurring:
            status, period_collected = conn.execute(
                "SELECT status, collected_amount FROM campaign_periods"
                " WHERE campaign_id = %s AND number = 1",
                (campaign_id,),
            ).fetchone()
            status = f"period 1 {status}, collected {period_collected}"
            collected = period_collected if period_collected == collected else -1
    print(
        f"pledges: {args.pledges}; latency {args.latency_ms} ms; provider limit "
        f"{args.provider_limit or 'none'}/s; concurrency {args.concurrency}"
    )
    print(
        f"settled in {elapsed:.1f} s: {args.pledges / elapsed:.1f} pledges/s; outcomes "
        f"{dict(outcomes)}; campaign {status}"
    )
    refused = provider.rate_limited if refused_in_workers is None else refused_in_workers
    print(
        f"provider charge calls: {calls}; sustained {sustained:.1f}/s; busiest second "
        f"{busiest}; refused for rate {refused}"
    )
    if args.processes > 1 and args.provider_limit:
        over = over_limit(app.config["SIMULATED_PROVIDER_DB"], args.provider_limit)
        print(
            f"{args.processes} processes; calls over {args.provider_limit} in any second,"
            f" from the provider's records of all of them: {over}"
        )
    print(f"peak RSS: {rss_peak / 1024:.0f} MiB (after seeding: {rss_before / 1024:.0f} MiB)")
    print(
        f"check: {charged} charged, collected {collected}, ledger {ledger}: "
        f"{'consistent' if collected == ledger and charged == args.pledges else 'MISMATCH'}"
    )
    return 0 if collected == ledger and charged == args.pledges else 1


if __name__ == "__main__":
    sys.exit(main())

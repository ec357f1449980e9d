"""Pledge surge: concurrent pledges to one hot campaign under gunicorn and PostgreSQL.

    .venv/bin/python bench/pledge_surge.py [--seconds 20] [--connections 32]

Needs wrk (`apt-get install wrk`), PostgreSQL at 127.0.0.1 (BENCH_DATABASE_URL) and
Redis (BENCH_REDIS_URL, a database of its own that the bench empties). The app runs as
in production: REDIS_URL set, so jobs go to RQ and an RQ worker (`flask worker`, at
the lowest CPU priority, as a mail worker beside a busy web server would be) sends the
confirmation emails. Traffic goes only to 127.0.0.1 and stops after --seconds. It
reports pledges/s next to the same server's rate on /bench/insert (one INSERT +
COMMIT per request), then checks that every pledge the server accepted is in the
database, that the campaign's totals equal the sum of its active pledges, and that
every active pledge's confirmation email was sent (waiting at most --drain seconds
after the surge for the worker to catch up).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sh(*args, env=None, **kwargs):
    return subprocess.run(args, check=True, env=env, cwd=ROOT, **kwargs)


def reset_database(url: str) -> None:
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(env: dict) -> str:
    sh(
        str(ROOT / ".venv/bin/flask"),
        "--app",
        "app",
        "db",
        "upgrade",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    script = """
from datetime import timedelta
from app import create_app
from accounts.models import User
from campaigns.models import BudgetLine, Campaign, Organizer
from core.clock import utcnow
from core.extensions import db
app = create_app()
with app.app_context():
    user = User(email="org@example.org", display_name="Org", password_hash="x")
    db.session.add(user); db.session.flush()
    c = Campaign(slug="hot", title="Hot campaign", summary="s", story="s", kind="strike_fund",
                 currency="EUR", goal_amount=10**9, funding_model="all_or_nothing",
                 deadline=utcnow() + timedelta(days=10), status="live", launched_at=utcnow())
    c.organizers = [Organizer(user_id=user.id, role="owner")]
    c.budget_lines = [BudgetLine(position=0, label="x", amount=10**9, required=True)]
    db.session.add(c); db.session.commit()
"""
    sh(str(ROOT / ".venv/bin/python"), "-c", script, env=env)
    return "hot"


def wrk(path: str, seconds: int, connections: int, run: str, port: int) -> dict:
    env = {**os.environ, "SURGE_PATH": path, "SURGE_RUN": run}
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench/pledge_surge.lua"),
            f"http://127.0.0.1:{port}{path}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    ok, other = map(int, re.search(r"SURGE ok=(\d+) other=(\d+)", out).groups())
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out).groups()
    return {
        "rate": rate,
        "ok": ok,
        "other": other,
        "latency_avg": latency[0],
        "latency_max": latency[2],
        "raw": out,
    }


def drain_mail(url: str, limit: int) -> float | None:
    """Seconds until no email waits (None if some still wait after `limit`)."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < limit:
            waiting = conn.execute(
                "SELECT count(*) FROM outbox_messages WHERE delivered_at IS NULL"
            ).fetchone()[0]
            if waiting == 0:
                return time.monotonic() - started
            time.sleep(0.5)
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=5099)
    parser.add_argument("--drain", type=int, default=300)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counterfund_bench"
    )
    reset_database(url)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(redis_url).flushdb()
    instance = tempfile.mkdtemp(prefix="counterfund-surge-")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "COUNTERFUND_INSTANCE": instance,
        "PYTHONPATH": str(ROOT),
        # One client sends every pledge here; the per-client limit is for real traffic.
        "PLEDGE_RATE_LIMIT": "100000000 per minute",
    }
    slug = prepare(env)
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--threads",
            "4",
            # Each worker takes its share of wrk's keep-alive connections (otherwise
            # one process may hold most of them and the rate depends on which).
            "--worker-connections",
            str(max(1, args.connections // args.workers)),
            "bench.surge_app:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    mail_worker = subprocess.Popen(
        ["nice", "-n", "19", str(ROOT / ".venv/bin/flask"), "--app", "app", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        trivial = wrk("/bench/insert", args.seconds, args.connections, "t", args.port)
        surge = wrk(f"/c/{slug}/pledge", args.seconds, args.connections, "p", args.port)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    try:
        drained = drain_mail(url, args.drain)
    finally:
        os.killpg(mail_worker.pid, signal.SIGTERM)
        try:
            mail_worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(mail_worker.pid, signal.SIGKILL)
            mail_worker.wait()

    with psycopg.connect(url) as conn:
        count, total = conn.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM pledges WHERE status = 'active'"
        ).fetchone()
        inactive = "SELECT count(*) FROM pledges WHERE status <> 'active'"
        pending = conn.execute(inactive).fetchone()[0]
        pledged, backers = conn.execute(
            "SELECT pledged_amount, backer_count FROM campaigns WHERE slug = %s", (slug,)
        ).fetchone()
        confirmations = conn.execute(
            "SELECT count(*) FROM outbox_messages"
            " WHERE topic = 'pledge-confirmation' AND delivered_at IS NOT NULL"
        ).fetchone()[0]
    print(
        f"trivial insert endpoint: {trivial['rate']:.1f} requests/s "
        f"(latency avg {trivial['latency_avg']}, max {trivial['latency_max']}; "
        f"{trivial['ok']} ok, {trivial['other']} other)"
    )
    print(
        f"pledges:                 {surge['rate']:.1f} pledges/s "
        f"(latency avg {surge['latency_avg']}, max {surge['latency_max']}; "
        f"{surge['ok']} accepted, {surge['other']} refused or failed)"
    )
    print(f"ratio pledges/trivial:   {surge['rate'] / trivial['rate']:.2f}")
    print(
        f"database: {count} active pledges totalling {total}; {pending} not active; "
        f"campaign shows {pledged} from {backers} backers"
    )
    # wrk stops counting at the deadline while up to one request per connection is still
    # in flight; those may land in the database without being counted as answered.
    lost = max(0, surge["ok"] - count)
    unanswered = count - surge["ok"]
    consistent = (pledged, backers) == (total, count)
    print(
        f"accepted but missing: {lost}; stored while wrk stopped counting: {unanswered} "
        f"(at most {args.connections}); totals consistent: {consistent}"
    )
    print(
        f"confirmation emails sent: {confirmations} of {count}; the worker finished "
        f"{drained:.1f} s after the surge"
        if drained is not None
        else f"confirmation emails sent: {confirmations} of {count}; still sending after "
        f"{args.drain} s"
    )
    shutil.rmtree(instance, ignore_errors=True)
    ok = (
        lost == 0
        and unanswered <= args.connections
        and consistent
        and surge["other"] == 0
        and confirmations == count
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

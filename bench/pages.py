"""Public pages under load: each against a bare Flask endpoint, same gunicorn settings.

    .venv/bin/python bench/pages.py [--seconds 10] [--connections 16] [--no-cache]
                                    [--pledges 1000000]

Needs wrk (`apt-get install wrk`), PostgreSQL at 127.0.0.1 (BENCH_DATABASE_URL) and
Redis (BENCH_REDIS_URL, db 7 by default: emptied). Loads the demo data, starts the bare
endpoint (bench/bare_app.py) and the app (gunicorn, 2 workers x 4 threads), drives each
page with wrk for --seconds over loopback, and prints one ratio line per page. Then it
adds a campaign with 1,000 pledges and one with --pledges pledges (bulk SQL) and
compares the latency (p50, p99) of their pages and API details. Each page is requested
once before wrk starts (its first visitor renders it). --no-cache measures
with the page cache off (PAGE_CACHE=false), for the figures before.
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
from bench.pledge_surge import reset_database  # noqa: E402 - after the path is set

PAGES = (
    ("home", "/"),
    ("listing", "/campaigns"),
    ("campaign page", "/c/riverside-warehouse-strike-fund"),
    ("campaign ledger", "/c/riverside-warehouse-strike-fund/ledger"),
    ("global ledger", "/ledger"),
    ("API list", "/api/v1/campaigns"),
    ("API detail", "/api/v1/campaigns/riverside-warehouse-strike-fund"),
)


def flask(env: dict, *args: str) -> None:
    subprocess.run(
        [str(ROOT / ".venv/bin/flask"), "--app", "app", *args],
        check=True,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def serve(target: str, port: int, env: dict, connections: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            *(str(ROOT / ".venv/bin/gunicorn"), "--bind", f"127.0.0.1:{port}"),
            *("--workers", "2", "--threads", "4", target),
            # Each worker takes at most half of wrk's connections: left to themselves,
            # one worker can accept most of them and the run measures one core (the
            # bare endpoint's rate swung from 1,640 to 6,400 requests/s between runs).
            *("--worker-connections", str(max(1, connections // 2))),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{target} did not start")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def wrk(url: str, seconds: int, connections: int) -> dict:
    # The first visitor of a page renders it; what is measured is the steady state
    # (which still re-renders each page once a minute, and after every write).
    urllib.request.urlopen(url, timeout=60).close()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _percentile(out, "50"),
        "p99": _percentile(out, "99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def _percentile(out: str, which: str) -> str:
    found = re.search(rf"^\s+{which}%\s+(\S+)\s*$", out, re.MULTILINE)
    return found.group(1) if found else "n/a (no request finished)"


def ms(text: str) -> float:
    found = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if found is None:
        return float("nan")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def first_render_ms(cache: redis.Redis, url: str) -> float:
    """What the first visitor after a public write waits: the page version bumped (as
    every committed pledge bumps it), then one request, timed; the median of 7."""
    times = []
    for _ in range(7):
        cache.incr("counterfund:page-version")
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            assert response.headers["X-Page-Cache"] == "miss", url
        times.append((time.perf_counter() - began) * 1000)
    return sorted(times)[3]


def seed(url: str, slug: str, count: int) -> None:
    """A copy of the demo's live campaign with `count` active pledges (bulk SQL)."""
    with psycopg.connect(url) as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'campaigns'"
            )
        }
        copy = [c for c in sorted(columns) if c not in ("id", "slug")]
        campaign_id = conn.execute(
            f"INSERT INTO campaigns (slug, {', '.join(copy)}) SELECT %s, {', '.join(copy)}"
            " FROM campaigns WHERE slug = 'riverside-warehouse-strike-fund' RETURNING id",
            (slug,),
        ).fetchone()[0]
        conn.execute(
            "UPDATE campaigns SET pledged_amount = %s, backer_count = %s WHERE id = %s",
            (count * 1000, count, campaign_id),
        )
        conn.execute(
            "INSERT INTO campaign_organizers (campaign_id, user_id, role, added_at)"
            " SELECT %s, user_id, role, added_at FROM campaign_organizers o"
            " JOIN campaigns c ON c.id = o.campaign_id"
            " WHERE c.slug = 'riverside-warehouse-strike-fund'",
            (campaign_id,),
        )
        conn.execute(
            "INSERT INTO pledges (public_id, submission_key, campaign_id, guest_email, amount,"
            " currency, status, visibility, public_name, public_message, private_message,"
            " locale, backend, card_brand, card_last4, charge_attempts, failure_code,"
            " retry_requested, link_version, recurring, fee_pending, created_at, activated_at)"
            " SELECT md5(%s || g::text), md5('k' || %s || g::text), %s,"
            " 'bench' || g || '@example.org', 1000, 'EUR', 'active', 'anonymous', '', '', '',"
            " 'en', 'simulated', 'visa', '4242', 0, '', false, 1, false, false,"
            " now() - (g %% 30) * interval '1 day', now() - (g %% 30) * interval '1 day'"
            " FROM generate_series(1, %s) AS g",
            (slug, slug, campaign_id, count),
        )
        conn.execute("ANALYZE pledges")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pledges", type=int, default=1_000_000)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counterfund_bench"
    )
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
    redis.Redis.from_url(redis_url).flushdb()
    reset_database(url)
    instance = tempfile.mkdtemp(prefix="counterfund-pages-")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "JOB_RUNNER": "eager",
        "COUNTERFUND_INSTANCE": instance,
        "PUBLIC_URL": "http://127.0.0.1:5098",
        "PYTHONPATH": str(ROOT),
        # One client (wrk) sends everything: the per-client limit is for real traffic.
        "API_RATE_LIMIT": "100000000 per minute",
        "PAGE_CACHE": "false" if args.no_cache else "true",
    }
    flask(env, "db", "upgrade")
    flask(env, "demo", "load")
    seed(url, "scale-1k", 1000)
    seed(url, "scale-big", args.pledges)
    # Autovacuum would vacuum the freshly loaded million rows on its own within the next
    # minutes, on the same two cores, in the middle of some measurement (a p99 of 18 ms
    # against 3.8 ms in one run): done now, before anything is measured.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) pledges")
    print(f"page cache: {'off' if args.no_cache else 'on'}; gunicorn 2 workers x 4 threads;")
    print(f"wrk {args.connections} connections, {args.seconds} s per page, loopback")
    bare = serve("bench.bare_app:app", 5097, env, args.connections)
    try:
        wrk("http://127.0.0.1:5097/", 3, args.connections)  # warm, as the app is
        floor = wrk("http://127.0.0.1:5097/", args.seconds, args.connections)
    finally:
        stop(bare)
    print(f"bare Flask endpoint: {floor['rate']:.0f} requests/s")
    app = serve("app:app", 5098, env, args.connections)
    ok = True
    try:
        # Both workers warm (imports, connection pools) before anything is measured.
        wrk("http://127.0.0.1:5098/", 3, args.connections)
        for name, path in PAGES:
            run = wrk(f"http://127.0.0.1:5098{path}", args.seconds, args.connections)
            ratio = run["rate"] / floor["rate"]
            ok &= run["errors"] == 0
            print(
                f"{name:16} {run['rate']:8.0f} requests/s  ratio {ratio:.2f}"
                f"  (p50 {run['p50']}, p99 {run['p99']}, non-2xx {run['errors']})"
            )
        for name, template in (("campaign page", "/c/{}"), ("API detail", "/api/v1/campaigns/{}")):
            small = wrk(f"http://127.0.0.1:5098{template.format('scale-1k')}", args.seconds, 4)
            big = wrk(f"http://127.0.0.1:5098{template.format('scale-big')}", args.seconds, 4)
            print(
                f"{name} 1k vs {args.pledges:,} pledges: p50 {small['p50']} vs {big['p50']}"
                f" ({ms(big['p50']) / ms(small['p50']):.2f}x), p99 {small['p99']} vs"
                f" {big['p99']} ({ms(big['p99']) / ms(small['p99']):.2f}x)"
            )
        cache = redis.Redis.from_url(redis_url)
        for name, template in (("campaign page", "/c/{}"), ("API detail", "/api/v1/campaigns/{}")):
            small, big = (
                first_render_ms(cache, f"http://127.0.0.1:5098{template.format(slug)}")
                for slug in ("scale-1k", "scale-big")
            )
            print(
                f"{name}, first rendering after a write: 1k {small:.1f} ms vs"
                f" {args.pledges:,} pledges {big:.1f} ms ({big / small:.2f}x; median of 7)"
            )
    finally:
        stop(app)
        shutil.rmtree(instance, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

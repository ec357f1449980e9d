"""Chaos: settlement driven only from outside, while its processes are killed.

    .venv/bin/python bench/chaos.py [--pledges 1000] [--kills 30] [--redis-wipes 3]

Starts, on this machine only: a redis-server of its own on a free port (no
persistence), gunicorn serving the app, several `flask worker` processes, all on a
fresh PostgreSQL database (CHAOS_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/counterfund_chaos). Then, as supporters and
attackers would:

1. pledges over HTTP (guest pledges, through the real form and its confirmation
   step) with the 4242 (charged), 0341 (declined when charged) and 3184 (needs
   authentication) cards;
2. opens some supporters' manage pages (the link from their email) and keeps the
   forms to submit them late;
3. moves the campaign's deadline to now (as time would);
4. while settlement runs: SIGKILLs random worker process trees (and restarts them),
   kills Redis and restarts it empty, kills the gunicorn master once, and submits
   the stale cancel forms;
5. waits until no pledge is `active` or `charging`, then checks at the provider (the
   simulated provider's own database) and in the ledger: no pledge charged twice, no
   charged pledge outside the ledger, collected = provider = ledger, every stale
   cancel refused, and `flask ledger verify` and `flask ledger reconcile` exit 0.

It prints one summary line and exits 1 on any failed check. Traffic goes only to
127.0.0.1; every loop is bounded in count and time. tests/test_chaos.py runs a
short version in `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CARDS = {"4242424242424242": "charged", "4000000000000341": "failed", "4000002760003184": "auth"}
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
SUBMISSION = re.compile(r'name="submission_key" type="hidden" value="([^"]+)"')
CONFIRMED = re.compile(r'name="confirmed_amount" type="hidden" value="(\d+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One supporter's browser: cookies, CSRF tokens, forms."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()), NoRedirect()
        )

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, data: dict) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))

    def _open(self, request) -> tuple[int, str]:
        for attempt in range(40):  # the web server may be restarting
            try:
                with self.opener.open(request, timeout=30) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode(errors="replace")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25 * (attempt + 1))
        raise RuntimeError(f"{request.full_url} did not answer")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Processes:
    """The system under test, each process in a group of its own so a SIGKILL takes its
    children (an RQ work horse, RQ's scheduler) with it, as a machine crash would."""

    def __init__(self, env: dict, logs: Path, workers: int):
        self.env, self.logs, self.worker_count = env, logs, workers
        self.redis_port = int(env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        self.redis: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        with open(self.logs / log, "ab") as out:  # the child keeps its own copy
            return subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )

    def start_redis(self) -> None:
        self.redis = self._spawn(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            "redis.log",
        )
        time.sleep(0.3)

    def start_web(self) -> None:
        self.web = self._spawn(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--bind",
                self.env["BIND"],
                "--workers",
                "2",
                "--threads",
                "4",
                "app:app",
            ],
            "web.log",
        )

    def start_worker(self) -> None:
        self.workers.append(
            self._spawn([PYTHON, "-m", "flask", "--app", "app", "worker"], "workers.log")
        )

    def start(self) -> None:
        self.start_redis()
        self.start_web()
        for _ in range(self.worker_count):
            self.start_worker()

    @staticmethod
    def kill(process: subprocess.Popen | None) -> None:
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def kill_random_worker(self) -> None:
        alive = [w for w in self.workers if w.poll() is None]
        if alive:
            self.kill(random.choice(alive))
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < self.worker_count:
            self.start_worker()

    def wipe_redis(self) -> None:
        self.kill(self.redis)
        time.sleep(random.uniform(0.2, 1.5))
        self.start_redis()

    def restart_web(self) -> None:
        self.kill(self.web)
        self.start_web()

    def replace_dead_workers(self) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < self.worker_count:
            self.start_worker()

    def stop(self) -> None:
        for process in [*self.workers, self.web, self.redis]:
            self.kill(process)


def flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def reset_database(url: str) -> None:
    admin, name = url.rsplit("/", 1)[0] + "/postgres", url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def pledge_over_http(base: str, slug: str, n: int, card: str) -> str:
    """A guest pledges through the form and its confirmation step; returns their email."""
    browser = Browser(base)
    email = f"chaos{n}@example.org"
    status, page = browser.get(f"/c/{slug}/pledge")
    assert status == 200, (status, page[:300])
    form = {
        "csrf_token": CSRF.search(page).group(1),
        "submission_key": SUBMISSION.search(page).group(1),
        "currency_code": "EUR",
        "amount": f"{5 + n % 20},50",
        "visibility": "anonymous",
        "email": email,
        "card_number": card,
    }
    status, page = browser._open(  # in German: "12,50" is twelve and a half
        urllib.request.Request(
            f"{base}/c/{slug}/pledge",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Accept-Language": "de"},
            method="POST",
        )
    )
    assert status == 200 and "confirm-amount" in page, (status, page[:500])
    form["confirmed_amount"] = CONFIRMED.search(page).group(1)
    assert form["confirmed_amount"] == str((5 + n % 20) * 100 + 50)
    status, page = browser._open(
        urllib.request.Request(
            f"{base}/c/{slug}/pledge",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Accept-Language": "de"},
            method="POST",
        )
    )
    assert status == 302, (status, page[:500])
    return email


def manage_links(outbox: Path) -> dict[str, str]:
    """The latest manage link per recipient, from the .eml files of the outbox."""
    links: dict[str, str] = {}
    for path in sorted(outbox.glob("*.eml")):
        text = path.read_text(errors="replace")
        to = re.search(r"^To: (.+)$", text, re.MULTILINE)
        link = re.search(r"https?://[^/\s]+(/pledge/\S+)", text)
        if to and link:
            links[to.group(1).strip()] = link.group(1)
    return links


def _mailed_links(outbox: Path, recipients: set[str], within: float) -> dict[str, str]:
    """The manage links once every recipient's confirmation has arrived (a worker
    sends them after each pledge commits), or whatever came within `within` s."""
    started = time.monotonic()
    links = manage_links(outbox)
    while not recipients <= set(links) and time.monotonic() - started < within:
        time.sleep(0.2)
        links = manage_links(outbox)
    return links


def _wait_for_settlement(db, campaign_id: int, within: float) -> None:
    """Until the campaign's first pledge is claimed for charging (or `within` s)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        claimed = db.execute(
            "SELECT count(*) FROM pledges WHERE campaign_id = %s "
            "AND status NOT IN ('active', 'pending', 'cancelled')",
            (campaign_id,),
        ).fetchone()[0]
        if claimed:
            return
        time.sleep(0.05)


def run(
    pledges: int = 1000,
    kills: int = 30,
    redis_wipes: int = 3,
    workers: int = 3,
    database_url: str | None = None,
    time_limit: float = 1800,
    seed: int | None = None,
    latency_ms: int = 60,
) -> dict:
    random.seed(seed)
    started = time.monotonic()
    database_url = database_url or os.environ.get(
        "CHAOS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counterfund_chaos"
    )
    reset_database(database_url)
    work = Path(tempfile.mkdtemp(prefix="counterfund-chaos-"))
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COUNTERFUND_FAULT",))},
        "COUNTERFUND_ENV": "development",
        "COUNTERFUND_INSTANCE": str(work / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "JOB_RUNNER": "rq",
        "JOB_QUEUE": "chaos",
        "PUBLIC_URL": base,
        "BIND": f"127.0.0.1:{web_port}",
        "OUTBOX_FOLDER": str(work / "outbox"),
        "SIMULATED_PROVIDER_DB": str(work / "provider.db"),
        "SIMULATED_LATENCY_MS": str(latency_ms),
        "SWEEP_INTERVAL": "2",
        "WORKER_MAINTENANCE_INTERVAL": "2",
        "CHARGE_LEASE_SECONDS": "3",
        "SETTLEMENT_BATCH_SIZE": "10",
        "SETTLEMENT_CONCURRENCY": "2",
        "SETTLEMENT_RATE_LIMIT": "1000",
        "RECONCILE_INTERVAL": "86400",
        "PLEDGE_RATE_LIMIT": "100000 per minute",
        "RATELIMIT_ENABLED": "true",
        # Fault injection: a worker dies right between a provider call and its
        # recording now and then, as on a power cut.
        "COUNTERFUND_FAULT_KILL_RATE": "0.01",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("TEST_DATABASE_URL", None)
    logs = work / "logs"
    logs.mkdir()
    # Set-up runs without fault injection: the demo settles its past campaigns (some
    # 30 provider calls), and a 1 % kill per call would end the loader a quarter of
    # the time, before the run under test has begun.
    setup = {k: v for k, v in env.items() if k != "COUNTERFUND_FAULT_KILL_RATE"}
    assert flask(setup, "db", "upgrade").returncode == 0
    loaded = flask(setup, "demo", "load")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    system = Processes(env, logs, workers)
    summary: dict = {"pledges": pledges}
    try:
        system.start()
        with psycopg.connect(database_url, autocommit=True) as db:
            slug, campaign_id = db.execute(
                "SELECT slug, id FROM campaigns WHERE status = 'live' ORDER BY id LIMIT 1"
            ).fetchone()
            # Set-up, as an operator: a goal the run's pledges meet, so it is funded.
            db.execute(
                "UPDATE campaigns SET goal_amount = 100, min_backers = NULL WHERE id = %s",
                (campaign_id,),
            )
            cards = list(CARDS)
            emails = {}
            for n in range(pledges):
                card = cards[0] if n % 10 < 8 else cards[1 + n % 2]  # 80% good cards
                emails[pledge_over_http(base, slug, n, card)] = CARDS[card]
            # Stale tabs: manage pages opened now, submitted after the deadline.
            links = _mailed_links(Path(env["OUTBOX_FOLDER"]), set(emails), within=60)
            stale = []
            for email in random.sample(sorted(emails), min(20, len(emails))):
                browser = Browser(base)
                status, page = browser.get(links[email])
                if status == 200 and CSRF.search(page):
                    stale.append((browser, links[email], CSRF.search(page).group(1)))
            db.execute(
                "UPDATE campaigns SET deadline = now() - interval '1 second' WHERE id = %s",
                (campaign_id,),
            )
            chaos = {"worker_kills": 0, "redis_wipes": 0, "web_restarts": 0}
            actions = ["worker"] * kills + ["redis"] * redis_wipes + ["web"]
            random.shuffle(actions)
            stale_refused = stale_accepted = 0
            during = 0
            # The first blows land as settlement starts: it may take only a few seconds,
            # and chaos that all comes after it tests nothing.
            _wait_for_settlement(db, campaign_id, within=60)
            for number, action in enumerate(actions):
                time.sleep(random.uniform(0.05, 0.3) if number < 3 else random.uniform(0.3, 1.5))
                during += db.execute(
                    "SELECT count(*) > 0 FROM pledges WHERE campaign_id = %s "
                    "AND status IN ('active', 'charging')",
                    (campaign_id,),
                ).fetchone()[0]
                if action == "worker":
                    system.kill_random_worker()
                    chaos["worker_kills"] += 1
                elif action == "redis":
                    system.wipe_redis()
                    chaos["redis_wipes"] += 1
                else:
                    system.restart_web()
                    chaos["web_restarts"] += 1
                if stale and random.random() < 0.5:
                    browser, link, token = stale.pop()
                    status, page = browser.post(f"{link}/cancel", {"csrf_token": token})
                    _status, after = browser.get(link)
                    if "Cancelled" in after or "Storniert" in after:
                        stale_accepted += 1
                    else:
                        stale_refused += 1
                system.replace_dead_workers()
                if time.monotonic() - started > time_limit / 2:
                    break
            for browser, link, token in stale:  # the rest, late
                browser.post(f"{link}/cancel", {"csrf_token": token})
                _status, after = browser.get(link)
                stale_accepted += "Cancelled" in after
                stale_refused += "Cancelled" not in after
            summary.update(chaos, kills_while_settling=during)
            # Settle: the surviving system must finish by itself.
            deadline = time.monotonic() + max(60.0, time_limit - (time.monotonic() - started))
            while time.monotonic() < deadline:
                system.replace_dead_workers()
                open_count = db.execute(
                    "SELECT count(*) FROM pledges WHERE campaign_id = %s "
                    "AND status IN ('active', 'charging')",
                    (campaign_id,),
                ).fetchone()[0]
                if open_count == 0:
                    break
                time.sleep(1)
            states = dict(
                db.execute(
                    "SELECT status, count(*) FROM pledges WHERE campaign_id = %s GROUP BY status",
                    (campaign_id,),
                ).fetchall()
            )
            refs = dict(
                db.execute(
                    "SELECT public_id, status FROM pledges WHERE campaign_id = %s", (campaign_id,)
                ).fetchall()
            )
            collected = db.execute(
                "SELECT collected_amount FROM campaigns WHERE id = %s", (campaign_id,)
            ).fetchone()[0]
            ledger_total, ledger_count = db.execute(
                "SELECT coalesce(sum(p.amount), 0), count(DISTINCT t.id) FROM ledger_postings p "
                "JOIN ledger_transactions t ON t.id = p.transaction_id "
                "WHERE t.kind = 'pledge_charge' AND t.campaign_id = %s AND p.account = %s",
                (campaign_id, f"campaign:{campaign_id}"),
            ).fetchone()
        provider = sqlite3.connect(env["SIMULATED_PROVIDER_DB"])
        per_pledge: dict[str, int] = {}
        provider_total = 0
        for ref, amount in provider.execute(
            "SELECT pledge_ref, amount - refunded FROM charges WHERE status = 'succeeded'"
        ):
            if ref in refs:
                per_pledge[ref] = per_pledge.get(ref, 0) + 1
                provider_total += amount
        provider.close()
        charged = [ref for ref, status in refs.items() if status == "charged"]
        verify = flask(env, "ledger", "verify")
        reconcile = flask(env, "ledger", "reconcile")
        summary.update(
            {
                "states": states,
                "double_charges": sum(1 for c in per_pledge.values() if c > 1),
                "charged_outside_ledger": len(charged) - ledger_count,
                "charged_at_provider_not_charged_here": sum(
                    1 for ref in per_pledge if refs[ref] not in ("charged", "refunded")
                ),
                "open_pledges": sum(states.get(s, 0) for s in ("active", "charging")),
                "collected": collected,
                "provider_total": provider_total,
                "ledger_total": ledger_total,
                "stale_cancels_refused": stale_refused,
                "stale_cancels_accepted": stale_accepted,
                "ledger_verify": verify.returncode,
                "ledger_reconcile": reconcile.returncode,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        if reconcile.returncode:
            summary["reconcile_output"] = reconcile.stdout[-2000:]
        if verify.returncode:
            summary["verify_output"] = (verify.stdout + verify.stderr)[-2000:]
    finally:
        system.stop()
    summary["ok"] = (
        summary.get("double_charges") == 0
        and summary.get("charged_outside_ledger") == 0
        and summary.get("charged_at_provider_not_charged_here") == 0
        and summary.get("open_pledges") == 0
        and summary.get("collected") == summary.get("provider_total") == summary.get("ledger_total")
        and summary.get("stale_cancels_accepted") == 0
        and summary.get("ledger_verify") == 0
        and summary.get("ledger_reconcile") == 0
    )
    summary["logs"] = str(logs)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pledges", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--redis-wipes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--latency-ms", type=int, default=60, help="the provider's, per call")
    args = parser.parse_args()
    summary = run(
        pledges=args.pledges,
        kills=args.kills,
        redis_wipes=args.redis_wipes,
        workers=args.workers,
        time_limit=args.time_limit,
        seed=args.seed,
        latency_ms=args.latency_ms,
    )
    print("chaos:", json.dumps(summary, sort_keys=True, default=int))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

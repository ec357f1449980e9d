"""The chaos run of bench/chaos.py, short: real gunicorn, `flask worker` processes and
a Redis of its own on PostgreSQL, driven over HTTP while workers, Redis and the web
master are killed; then the provider's records and the ledger must agree."""

from __future__ import annotations

import os
import shutil

import pytest

from bench.chaos import run


def test_settlement_survives_kills_wipes_and_stale_forms():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url or not shutil.which("redis-server"):
        if os.environ.get("CI") == "true":
            pytest.fail("the chaos test needs TEST_DATABASE_URL and redis-server under CI")
        pytest.skip("the chaos test needs TEST_DATABASE_URL (PostgreSQL) and redis-server")
    summary = run(
        pledges=60,
        kills=8,
        redis_wipes=2,
        workers=2,
        database_url=url.rsplit("/", 1)[0] + "/counterfund_chaos_ci",
        time_limit=150,
        seed=7,
        latency_ms=60,
    )
    print("chaos:", summary)
    assert summary["double_charges"] == 0
    assert summary["charged_outside_ledger"] == 0
    assert summary["charged_at_provider_not_charged_here"] == 0
    assert summary["open_pledges"] == 0, summary
    assert summary["collected"] == summary["provider_total"] == summary["ledger_total"]
    assert summary["stale_cancels_accepted"] == 0 and summary["stale_cancels_refused"] > 0
    assert summary["ledger_verify"] == 0, summary.get("verify_output")
    assert summary["ledger_reconcile"] == 0, summary.get("reconcile_output")
    assert summary["redis_wipes"] == 2 and summary["web_restarts"] == 1
    assert summary["kills_while_settling"] >= 3, summary
    assert summary["ok"]

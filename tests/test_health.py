"""Operators see a settlement stall: the last sweep and overdue campaigns."""

from __future__ import annotations

import json
from datetime import timedelta

from core import clock
from tests.factories import add_pledges, make_campaign, past_deadline, run_sweep


def test_deep_health_reports_the_last_sweep_and_overdue_campaigns(app, client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}
    never = client.get("/healthz?deep=1")
    assert never.status_code == 503
    assert never.get_json()["settlement"]["last_sweep"] is None
    run_sweep(app)
    fresh = client.get("/healthz?deep=1")
    assert fresh.status_code == 200, fresh.get_json()
    report = fresh.get_json()["settlement"]
    assert report["overdue_campaigns"] == 0 and report["runner"] == "eager"
    # A campaign past its deadline that no sweep decided, and a sweep long ago: a stall.
    campaign_id = make_campaign(app, goal=10)
    add_pledges(app, campaign_id, [("4242424242424242", 20)])
    past_deadline(app, campaign_id, extra=timedelta(hours=1))
    stalled = client.get("/healthz?deep=1")
    assert stalled.status_code == 503
    assert stalled.get_json()["settlement"]["overdue_campaigns"] == 1
    result = app.test_cli_runner().invoke(args=["health"])
    assert result.exit_code == 1
    assert json.loads(result.output)["status"] == "degraded"
    run_sweep(app)
    assert client.get("/healthz?deep=1").status_code == 200
    assert app.test_cli_runner().invoke(args=["health"]).exit_code == 0
    clock.freeze(clock.utcnow() + timedelta(minutes=10))
    assert client.get("/healthz?deep=1").status_code == 503  # no sweep for 10 minutes

"""Ledger CSV exports never carry a cell a spreadsheet would run as a formula; the JSON
export and the log's leaves keep the exact text."""

from __future__ import annotations

import csv
import io
import json
import secrets

import pytest

from campaigns.models import Campaign
from core.extensions import db
from core.money import Money
from core.text import spreadsheet_safe
from core.urls import public_request_context
from payments import services
from payments.backends import get_backend
from tests.factories import GOOD, make_campaign, past_deadline, run_sweep


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)"])
def test_formula_cells_are_neutralised_in_csv_only(app, client, name):
    campaign_id = make_campaign(app, goal=10)
    with app.app_context(), public_request_context():
        campaign = db.session.get(Campaign, campaign_id)
        pledge, _ = services.start_pledge(
            campaign,
            amount=Money(2000, "EUR"),
            submission_key=secrets.token_urlsafe(20),
            guest_email="s@example.org",
            visibility="pseudonym",
            public_name=name,
        )
        session = services.start_card_setup(pledge)
        services.card_saved(pledge, get_backend().provider.confirm_setup(session.setup_id, GOOD))
        db.session.commit()
        slug = campaign.slug
    past_deadline(app, campaign_id)
    run_sweep(app)
    rows = list(csv.DictReader(io.StringIO(client.get(f"/c/{slug}/ledger/export.csv").text)))
    names = {row["counterparty"] for row in rows if row["kind"] == "pledge_charge"}
    stored = name.strip()
    assert names == {"'" + stored}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), row
    exported = client.get(f"/c/{slug}/ledger/export.json").text
    assert json.dumps(stored)[1:-1] in exported  # exact in JSON


def test_numbers_stay_numbers():
    assert spreadsheet_safe(-500) == -500
    assert spreadsheet_safe("plain") == "plain"
    assert spreadsheet_safe("-500") == "'-500"
    assert spreadsheet_safe("\tcmd") == "'\tcmd"
    assert spreadsheet_safe("\rcmd") == "'\rcmd"

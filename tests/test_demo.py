"""The demo a newcomer sees on `make run`: live campaigns, and campaigns whose deadlines
passed (settled with a refund and a disbursement, failed and released, declined cards in
the retry window), so the public ledger is populated and verifiable on first start."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from campaigns.models import Campaign
from core.extensions import db
from ledger.disbursements import Disbursement
from ledger.models import LedgerTransaction
from payments.models import Pledge
from tests.test_ledger import _verify_offline


def _load(app) -> None:
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    assert "Loaded 10 demo campaigns" in result.output


def test_a_fresh_demo_has_a_signed_checkpoint_that_verifies_its_export(app, tmp_path):
    _load(app)
    client = app.test_client()
    note = client.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    size = int(note.split("\n")[1])
    assert size > 0
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    export = client.get("/ledger/export.json").get_data(as_text=True)
    verified = _verify_offline(tmp_path, key, note, export=export)
    assert verified.returncode == 0, verified.stderr
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
    reconciled = runner.invoke(args=["ledger", "reconcile"])
    assert reconciled.exit_code == 0 and "No differences." in reconciled.output


def test_the_demo_history_covers_every_ending(app):
    _load(app)
    with app.app_context():
        status = dict(db.session.execute(select(Campaign.slug, Campaign.status)).all())
        assert status["back-pay-for-the-eastgate-bus-cleaners"] == "settled"
        assert status["harbour-court-rent-strike-legal-fund"] == "released"
        assert status["hospital-porters-hardship-fund"] == "settling"
        assert status["riverside-warehouse-strike-fund"] == "live"
        assert status["linden-road-school-kitchen-sick-pay"] == "settled"

        def states(slug):
            return dict(
                db.session.execute(
                    select(Pledge.status, func.count())
                    .join(Campaign, Campaign.id == Pledge.campaign_id)
                    .where(Campaign.slug == slug)
                    .group_by(Pledge.status)
                ).all()
            )

        assert states("back-pay-for-the-eastgate-bus-cleaners") == {"charged": 7, "refunded": 1}
        assert states("harbour-court-rent-strike-legal-fund") == {"released": 3}
        assert states("hospital-porters-hardship-fund") == {"charged": 3, "failed": 2}
        kinds = dict(
            db.session.execute(
                select(LedgerTransaction.kind, func.count()).group_by(LedgerTransaction.kind)
            ).all()
        )
        # The past one-off campaigns' 21 charges, and two charged weeks of the weekly
        # strike fund's five standing pledges, one of whose cards is declined.
        assert kinds == {
            "pledge_charge": 21 + 8,
            "processor_fee": 29,
            "refund": 1,
            "disbursement": 2,  # the back pay, and the weekly fund's batch of strike pay
            "round_pool": 2,  # the two matching rounds' pools
            "round_match": 2,  # the finalised round's two matches
        }
        approved = db.session.scalars(select(Disbursement).order_by(Disbursement.id)).all()
        assert [d.status for d in approved] == ["approved", "approved"]
        assert (approved[1].payee_count, len(approved[1].commitment)) == (4, 64)
    client = app.test_client()
    page = client.get("/c/back-pay-for-the-eastgate-bus-cleaners/ledger").get_data(as_text=True)
    assert "Eastgate Cleaners" in page
    listing = client.get("/c/back-pay-for-the-eastgate-bus-cleaners/disbursements")
    receipt = re.search(r'href="(/ledger/receipts/[^"]+)"', listing.get_data(as_text=True))
    assert receipt is not None
    image = client.get(receipt.group(1))
    assert image.status_code == 200 and image.mimetype in ("image/png", "image/jpeg")
    assert len(image.data) > 1000
    image.close()


def test_the_demo_weekly_strike_fund_has_missed_and_charged_weeks(app):
    _load(app)
    client = app.test_client()
    slug = "fairfield-bus-drivers-weekly-strike-pay"
    recurring = client.get(f"/api/v1/campaigns/{slug}").get_json()["recurring"]
    assert recurring["interval"] == "week" and recurring["current_period"] == 4
    assert recurring["threshold"] == {"amount": None, "backers": 4}
    periods = client.get(f"/api/v1/campaigns/{slug}/periods").get_json()["periods"]
    # Week 3 is met and still being charged: one card was declined and is retried.
    assert [(p["period"], p["status"], p["backers"]) for p in periods] == [
        (1, "missed", 3),
        (2, "charged", 5),
        (3, "met", 5),
        (4, "open", 5),
    ]
    assert periods[1]["collected"] == {"amount": 5000, "currency": "EUR"}


def test_the_demo_has_a_final_quadratic_round_and_an_open_capped_one(app, tmp_path):
    """`/api/v1/rounds` shows both on a fresh start, and the verifier recomputes the
    final one against the ledger's export."""
    import json

    from verifier.counterfund_verify import main as verify

    _load(app)
    client = app.test_client()
    rounds = {r["rule"]: r for r in client.get("/api/v1/rounds").get_json()["rounds"]}
    assert (rounds["quadratic"]["status"], rounds["capped_match"]["status"]) == ("final", "open")
    final = client.get(f"/api/v1/rounds/{rounds['quadratic']['id']}").get_json()
    matches = {c["slug"]: c["match"] for c in final["campaigns"]}
    # The back-pay fund's larger pledges would take more than 70 % of the pool: capped,
    # and the rest goes to the many small pledges for the school kitchen staff.
    assert matches == {
        "back-pay-for-the-eastgate-bus-cleaners": 1050_00,
        "linden-road-school-kitchen-sick-pay": 450_00,
    }
    (tmp_path / "round.json").write_text(json.dumps(final))
    (tmp_path / "ledger.json").write_bytes(client.get("/ledger/export.json").get_data())
    args = ["round", str(tmp_path / "round.json"), "--export", str(tmp_path / "ledger.json")]
    assert verify(args) == 0
    page = client.get("/c/riverside-warehouse-strike-fund").get_data(as_text=True)
    assert "Matched by Riverside Food Co-op winter match" in page
    assert "Your €5.00 now brings about €5.00 of matching" in page


def test_the_demo_loads_with_the_embedded_job_thread(make_app):
    """`make run`'s own settings (no Redis: jobs in a thread of the web process). Mail
    queued by the loader once started that thread, and its sweep settled campaigns
    under the loader's feet ("This campaign is not taking pledges")."""
    app = make_app(JOB_RUNNER="thread", SWEEP_INTERVAL=1)
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output + repr(result.exception)

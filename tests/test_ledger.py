"""The public ledger: Merkle log, signed checkpoints, proofs, verification, privacy."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from core.extensions import db
from core.money import Money
from core.urls import public_request_context
from ledger import log, merkle
from ledger import services as ledger
from ledger.models import EntryKind
from payments.models import Pledge
from tests.factories import (
    DECLINE_ON_CHARGE,
    GOOD,
    add_pledges,
    live_campaign,
    login,
    make_campaign,
    past_deadline,
    pledge,
    run_sweep,
    submit,
)

ROOT = Path(__file__).resolve().parent.parent
VERIFIER = ROOT / "verifier" / "counterfund_verify.py"


def _settled_ledger(app, pledges=((GOOD, 20), (GOOD, 35), (DECLINE_ON_CHARGE, 10))) -> int:
    cid = make_campaign(app, goal=10)
    add_pledges(app, cid, list(pledges))
    past_deadline(app, cid)
    run_sweep(app)
    return cid


def _verify_offline(tmp_path, key, checkpoint, **files) -> subprocess.CompletedProcess:
    (tmp_path / "checkpoint.txt").write_text(checkpoint)
    args = [
        sys.executable,
        str(VERIFIER),
        "--key",
        key,
        "--checkpoint",
        str(tmp_path / "checkpoint.txt"),
    ]
    for option, content in files.items():
        path = tmp_path / f"{option}.data"
        path.write_text(content)
        args += [f"--{option.replace('_', '-')}", str(path)]
    return subprocess.run(args, capture_output=True, text=True)


def test_every_charge_and_fee_is_a_balanced_leaf(app):
    _settled_ledger(app)
    client = app.test_client()
    body = client.get("/api/v1/ledger/entries?start=0&end=4").get_json()
    assert body["tree_size"] == 4
    kinds = sorted(e["transaction"]["kind"] for e in body["entries"])
    assert kinds == ["pledge_charge", "pledge_charge", "processor_fee", "processor_fee"]
    for entry in body["entries"]:
        leaf = base64.b64decode(entry["leaf"])
        assert json.loads(leaf) == entry["transaction"]
        assert (
            leaf
            == json.dumps(
                entry["transaction"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )
        assert sum(p["amount"] for p in entry["transaction"]["postings"]) == 0


def test_checkpoint_export_and_proofs_verify_with_the_standalone_verifier(app, tmp_path):
    _settled_ledger(app)
    client = app.test_client()
    early = client.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    # More money moves: the log grows and a new checkpoint is signed.
    _settled_ledger(app, pledges=((GOOD, 50),))
    checkpoint = client.get("/api/v1/ledger/checkpoint")
    assert checkpoint.mimetype == "text/plain"
    note = checkpoint.get_data(as_text=True)
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    size = int(note.split("\n")[1])
    assert size == 6 and note != early
    export = client.get("/ledger/export.json").get_data(as_text=True)
    result = _verify_offline(tmp_path, key, note, export=export)
    assert result.returncode == 0, result.stderr
    assert "root matches" in result.stdout
    for index in range(size):
        proof = client.get(f"/api/v1/ledger/proof/inclusion?index={index}&size={size}")
        result = _verify_offline(tmp_path, key, note, inclusion=proof.get_data(as_text=True))
        assert result.returncode == 0, result.stderr
    early_size = int(early.split("\n")[1])
    consistency = client.get(f"/api/v1/ledger/proof/consistency?first={early_size}&second={size}")
    result = _verify_offline(
        tmp_path, key, note, old_checkpoint=early, consistency=consistency.get_data(as_text=True)
    )
    assert result.returncode == 0, result.stderr
    assert f"extends the tree of {early_size}" in result.stdout


def test_the_verifier_rejects_a_forged_checkpoint_or_export(app, tmp_path):
    _settled_ledger(app)
    client = app.test_client()
    note = client.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    export = json.loads(client.get("/ledger/export.json").get_data(as_text=True))
    lines = note.split("\n")
    forged = "\n".join([lines[0], lines[1], base64.b64encode(b"x" * 32).decode(), *lines[3:]])
    assert _verify_offline(tmp_path, key, forged).returncode == 1
    doc = json.loads(base64.b64decode(export["entries"][0]["leaf"]))
    doc["postings"][0]["amount"] -= 1
    doc["postings"][1]["amount"] += 1
    export["entries"][0]["leaf"] = base64.b64encode(
        json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    ).decode()
    result = _verify_offline(tmp_path, key, note, export=json.dumps(export))
    assert result.returncode == 1 and "root" in result.stderr


def test_ledger_verify_cli_passes_then_names_an_altered_entry(app, backend):
    _settled_ledger(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    with app.app_context():
        if backend == "postgresql":
            # An operator with superuser rights gets past the append-only triggers.
            db.session.execute(sa.text("SET session_replication_role = replica"))
        db.session.execute(
            sa.text(
                "UPDATE ledger_postings SET amount = amount + 1 WHERE id = ("
                " SELECT min(id) FROM ledger_postings WHERE amount > 0)"
            )
        )
        db.session.execute(
            sa.text(
                "UPDATE ledger_postings SET amount = amount - 1 WHERE id = ("
                " SELECT min(id) FROM ledger_postings WHERE amount < 0)"
            )
        )
        db.session.commit()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert re.search(r"entry 0 \(charge-[0-9a-f]+\) was altered", result.output), result.output


def test_altering_a_byte_of_a_copied_database_is_caught(make_app, tmp_path, backend):
    if backend != "sqlite":
        return  # the copy-of-the-database variant uses the SQLite file; see the test above
    app = make_app()
    _settled_ledger(app)
    source = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with app.app_context():
        db.engine.dispose()
        with db.engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM ledger_transactions").scalar()
    for column in ("memo", "counterparty", "reference"):
        for row in range(1, count + 1):
            copy = tmp_path / f"copy-{column}-{row}.db"
            shutil.copy(source, copy)
            conn = __import__("sqlite3").connect(copy)
            conn.execute(
                f"UPDATE ledger_transactions SET {column} = "
                f"substr({column}, 1, length({column}) - 1) || 'X' WHERE id = ?",
                (row,),
            )
            conn.commit()
            conn.close()
            copied = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{copy}")
            result = copied.test_cli_runner().invoke(args=["ledger", "verify"])
            assert result.exit_code == 1, (column, row, result.output)
            assert "was altered" in result.output


def test_ledger_tables_are_append_only_on_postgres(app, backend):
    _settled_ledger(app)
    if backend != "postgresql":
        return
    with app.app_context():
        for statement in (
            "UPDATE ledger_transactions SET memo = 'x'",
            "DELETE FROM ledger_postings",
            "UPDATE ledger_tree_nodes SET level = 9",
            "DELETE FROM ledger_checkpoints",
            "DELETE FROM ledger_leaves",
        ):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                db.session.execute(sa.text(statement))
            db.session.rollback()


def test_a_campaign_balance_never_goes_negative(app):
    cid = _settled_ledger(app, pledges=((GOOD, 20),))
    with app.app_context():
        balance = ledger.balance(f"campaign:{cid}", "EUR")
        assert balance == 2000 - (2000 * 150 // 10_000 + 25)
        with pytest.raises(ledger.LedgerError):
            ledger.record(
                EntryKind.DISBURSEMENT,
                campaign_id=cid,
                reference="too-much",
                postings=[
                    (f"campaign:{cid}", Money(-balance - 1, "EUR")),
                    ("payee:printer", Money(balance + 1, "EUR")),
                ],
            )
        db.session.rollback()
        ledger.record(
            EntryKind.DISBURSEMENT,
            campaign_id=cid,
            reference="exact",
            postings=[
                (f"campaign:{cid}", Money(-balance, "EUR")),
                ("payee:printer", Money(balance, "EUR")),
            ],
        )
        db.session.commit()
        assert ledger.balance(f"campaign:{cid}", "EUR") == 0
        with pytest.raises(ledger.LedgerError, match="balance"):
            ledger.record(
                EntryKind.ADJUSTMENT,
                campaign_id=cid,
                reference="unbalanced",
                postings=[(f"campaign:{cid}", Money(5, "EUR")), ("platform", Money(-4, "EUR"))],
            )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/v1/ledger/proof/inclusion", "index is required"),
        ("/api/v1/ledger/proof/inclusion?index=x", "whole number"),
        ("/api/v1/ledger/proof/inclusion?index=99", "below size"),
        ("/api/v1/ledger/proof/inclusion?index=0&size=999", "at most the tree size"),
        ("/api/v1/ledger/proof/inclusion?index=-1", "whole number"),
        ("/api/v1/ledger/proof/consistency?first=0&second=2", "at least 1"),
        ("/api/v1/ledger/proof/consistency?first=3&second=2", "not be above"),
        ("/api/v1/ledger/proof/consistency?first=1&second=99", "at most the tree size"),
        ("/api/v1/ledger/entries?start=3&end=1", "not be below"),
        ("/api/v1/ledger/entries?start=0&end=99", "at most the tree size"),
        ("/ledger?kind=bribe", "kind must be"),
        # Digits of other scripts: int() reads "٣" and raises on "²"; both are refused.
        ("/api/v1/ledger/proof/inclusion?index=\u00b2", "whole number"),
        ("/api/v1/ledger/proof/inclusion?index=\u0663", "whole number"),
        ("/api/v1/ledger/entries?start=0&end=\u00b9", "whole number"),
        ("/api/v1/ledger/proof/inclusion?index=" + "9" * 5000, "whole number"),
        ("/ledger?from=yesterday", "date"),
    ],
)
def test_malformed_parameters_get_a_clear_400(app, url, message):
    _settled_ledger(app)
    response = app.test_client().get(url, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert message in response.get_json(force=True)["detail"]


def test_auditor_pages_filters_and_exports(app):
    cid = _settled_ledger(app)
    client = app.test_client()
    with app.app_context():
        from campaigns.models import Campaign

        slug = db.session.get(Campaign, cid).slug
    page = client.get("/ledger").get_data(as_text=True)
    assert "pledge charge" in page and "processor fee" in page
    only_fees = client.get("/ledger?kind=processor_fee").get_data(as_text=True)
    assert "processor fee" in only_fees and "pledge charge</td>" not in only_fees
    assert "No ledger entries match" in client.get(
        "/ledger?from=2001-01-01&to=2001-01-02"
    ).get_data(as_text=True)
    campaign_page = client.get(f"/c/{slug}/ledger").get_data(as_text=True)
    raised = 2000 + 3500
    fees = sum(a * 150 // 10_000 + 25 for a in (2000, 3500))
    assert Money(raised, "EUR").format("en") in campaign_page
    assert Money(raised - fees, "EUR").format("en") in campaign_page
    csv_text = client.get(f"/c/{slug}/ledger/export.csv").get_data(as_text=True)
    assert csv_text.splitlines()[0].startswith("index,time,kind")
    assert len(csv_text.splitlines()) == 1 + 8  # two postings for each of four entries
    feed = client.get("/ledger/feed.atom")
    assert feed.mimetype == "application/atom+xml" and "pledge charge" in feed.get_data(
        as_text=True
    )
    entry = client.get("/ledger/entry/0").get_data(as_text=True)
    assert 'data-proof="' in entry and "counterfund_verify.py" in entry


def test_receipt_links_to_the_inclusion_proof(app):
    slug = live_campaign(
        app,
        goal="10",
        **{"budget_lines-0-amount": "10", "budget_lines-1-item": "", "budget_lines-1-amount": ""},
    )
    supporter = app.test_client()
    pledge(supporter, slug, amount="25")
    mail = sorted(Path(app.config["OUTBOX_FOLDER"]).glob("*.eml"))[-1].read_text()
    link = re.search(r"http://[^/]+(/pledge/\S+)", mail).group(1)
    with app.app_context():
        from campaigns.models import Campaign

        cid = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
    past_deadline(app, cid)
    run_sweep(app)
    receipt = supporter.get(link).get_data(as_text=True)
    entry_link = re.search(r'href="(/ledger/entry/\d+)"', receipt).group(1)
    entry = supporter.get(entry_link).get_data(as_text=True)
    assert "pledge charge" in entry and "€25.00" not in entry  # minor units in the proof
    index = int(entry_link.rsplit("/", 1)[1])
    with app.app_context():
        size = log.tree_size()
        proof = merkle.inclusion_proof(index, size, log.fetch_nodes)
        [(_, leaf, doc)] = log.entries(index, index + 1)
    assert doc["postings"][1]["amount"] == 2500
    from verifier.counterfund_verify import verify_inclusion

    with app.app_context():
        verify_inclusion(
            index, size, merkle.leaf_hash(leaf), proof, merkle.root(size, log.fetch_nodes)
        )


def test_supporter_tags_cannot_be_linked_across_campaigns(app):
    first, second = make_campaign(app, goal=10), make_campaign(app, goal=10)
    with app.app_context(), public_request_context():
        from payments.privacy import supporter_tag

        a = Pledge(campaign_id=first, guest_email="same@example.org")
        b = Pledge(campaign_id=second, guest_email="same@example.org")
        c = Pledge(campaign_id=first, guest_email="same@example.org")
        assert supporter_tag(a) == supporter_tag(c)
        assert supporter_tag(a) != supporter_tag(b)


def test_public_pages_api_and_exports_carry_no_personal_data(app):
    """After a settlement: no email, no anonymous supporter's name, no provider
    customer id, no card detail anywhere an outsider can look."""
    slug = live_campaign(
        app,
        goal="10",
        **{"budget_lines-0-amount": "10", "budget_lines-1-item": "", "budget_lines-1-amount": ""},
    )
    pledge(
        app.test_client(),
        slug,
        amount="25",
        email="named.supporter@example.org",
        visibility="name",
        public_name="Rosa Parks",
    )
    pledge(
        app.test_client(),
        slug,
        amount="30",
        email="secret.person@example.org",
        visibility="anonymous",
        public_name="Secret Person Name",
    )
    with app.app_context():
        from campaigns.models import Campaign

        cid = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
        secrets_ = db.session.execute(
            select(
                Pledge.provider_customer_id,
                Pledge.provider_payment_method_id,
                Pledge.provider_setup_id,
            )
        ).all()
    past_deadline(app, cid)
    run_sweep(app)
    client = app.test_client()
    size = int(client.get("/api/v1/ledger/checkpoint").get_data(as_text=True).split("\n")[1])
    urls = [
        "/",
        "/campaigns?status=all",
        f"/c/{slug}",
        f"/c/{slug}/ledger",
        "/ledger",
        "/ledger/export.json",
        "/ledger/export.csv",
        f"/c/{slug}/ledger/export.json",
        f"/c/{slug}/ledger/export.csv",
        "/ledger/feed.atom",
        f"/c/{slug}/ledger/feed.atom",
        f"/c/{slug}/updates.atom",
        "/api/v1/campaigns",
        f"/api/v1/campaigns/{slug}",
        f"/api/v1/ledger/entries?start=0&end={size}",
        "/api/v1/ledger/checkpoint",
    ]
    urls += [f"/ledger/entry/{i}" for i in range(size)]
    urls += [f"/api/v1/ledger/proof/inclusion?index={i}" for i in range(size)]
    forbidden = [
        re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
        re.compile("Secret Person"),
        re.compile(r"\b(cus|pm|seti|ch|pi)_(sim_)?[0-9a-zA-Z]{6,}"),
        # Card numbers and their last four digits as words, not inside hex references
        # (a keyed hash holds "4242" by chance: about once in 65,536 positions).
        re.compile(r"\b4242(\d{12})?\b|\b4000\s?0000|last4|card_brand"),
    ]
    for secret_row in secrets_:
        forbidden += [re.compile(re.escape(value)) for value in secret_row if value]
    for url in urls:
        body = client.get(url).get_data(as_text=True)
        for pattern in forbidden:
            found = pattern.search(body)
            assert found is None, f"{url} shows {found.group(0)!r}"
    assert "Rosa Parks" in client.get(f"/c/{slug}/ledger").get_data(as_text=True)


def test_drafts_have_no_public_ledger(app, client):
    slug = live_campaign(app)
    login(client, email="org@example.org")
    assert client.get(f"/c/{slug}/ledger").status_code == 200
    draft = submit(
        client,
        "/campaigns/new",
        __import__("tests.factories", fromlist=["campaign_form"]).campaign_form(
            title="Quiet draft"
        ),
    )
    draft_slug = draft.headers["Location"].rsplit("/", 1)[-1]
    assert app.test_client().get(f"/c/{draft_slug}/ledger").status_code == 404


def test_demo_settlement_verifies_end_to_end(app, tmp_path):
    """The issue's acceptance: settle the demo campaigns, then the checkpoint, every
    entry's inclusion proof and a consistency proof verify with the standalone tool."""
    from datetime import timedelta

    from core import clock

    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    start = clock.utcnow()
    clock.freeze(start + timedelta(days=50))  # the cleaners' campaign (45 days) is due
    assert runner.invoke(args=["settle", "--due"]).exit_code == 0
    client = app.test_client()
    early = client.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    clock.freeze(start + timedelta(days=61))  # now every demo campaign is past its deadline
    result = runner.invoke(args=["settle", "--due"])
    assert result.exit_code == 0, result.output
    note = client.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    size, early_size = int(note.split("\n")[1]), int(early.split("\n")[1])
    assert 0 < early_size < size
    verified = _verify_offline(
        tmp_path, key, note, export=client.get("/ledger/export.json").get_data(as_text=True)
    )
    assert verified.returncode == 0, verified.stderr
    for index in range(size):
        proof = client.get(f"/api/v1/ledger/proof/inclusion?index={index}&size={size}")
        verified = _verify_offline(tmp_path, key, note, inclusion=proof.get_data(as_text=True))
        assert verified.returncode == 0, (index, verified.stderr)
    proof = client.get(f"/api/v1/ledger/proof/consistency?first={early_size}&second={size}")
    verified = _verify_offline(
        tmp_path, key, note, old_checkpoint=early, consistency=proof.get_data(as_text=True)
    )
    assert verified.returncode == 0, verified.stderr
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
    assert runner.invoke(args=["ledger", "reconcile"]).exit_code == 0


def test_erasing_supporters_personal_data_leaves_every_proof_valid(app):
    _settled_ledger(app)
    client = app.test_client()
    before = client.get("/api/v1/ledger/checkpoint").get_data(as_text=True)
    with app.app_context():
        db.session.execute(
            sa.update(Pledge).values(
                guest_email="erased@invalid", public_name="", private_message=""
            )
        )
        db.session.commit()
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0
    assert client.get("/api/v1/ledger/checkpoint").get_data(as_text=True) == before
    with app.app_context():
        size = log.tree_size()
        root = merkle.root(size, log.fetch_nodes)
        from verifier.counterfund_verify import verify_inclusion

        for index, leaf, _doc in log.entries(0, size):
            verify_inclusion(
                index,
                size,
                merkle.leaf_hash(leaf),
                merkle.inclusion_proof(index, size, log.fetch_nodes),
                root,
            )


def test_a_balance_row_created_by_a_parallel_transaction_is_not_read_as_going_below_zero(
    app, monkeypatch
):
    """Three workers recording a campaign's first charges at once: one creates the
    campaign's balance row while another's UPDATE, which started before that commit,
    sees no row; by the time it looks for the row, the row is there. That is not a
    balance going below zero (CI saw a settlement job fail with it): look again."""
    cid = make_campaign(app)
    with app.app_context(), public_request_context():
        account = ledger.campaign_account(cid)
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=cid,
            reference="first",
            postings=[(ledger.PLATFORM, Money(-500, "EUR")), (account, Money(500, "EUR"))],
            counterparty="platform",
            memo="The row exists now",
        )
        db.session.commit()
        real_changed = ledger.changed
        calls = []

        def committed_after_our_update_began(statement):
            calls.append(statement)
            return 0 if len(calls) == 1 else real_changed(statement)

        monkeypatch.setattr(ledger, "changed", committed_after_our_update_began)
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=cid,
            reference="second",
            postings=[(account, Money(300, "EUR")), (ledger.PLATFORM, Money(-300, "EUR"))],
            counterparty="platform",
            memo="Posted while the row appeared",
        )
        db.session.commit()
        assert ledger.balance(account, "EUR") == 800
        # A real overdraft is still refused.
        with pytest.raises(ledger.LedgerError, match="below zero"):
            ledger.record(
                EntryKind.ADJUSTMENT,
                campaign_id=cid,
                reference="third",
                postings=[(account, Money(-900, "EUR")), (ledger.PLATFORM, Money(900, "EUR"))],
                counterparty="platform",
                memo="More than it holds",
            )


def test_ledger_pages_speak_the_visitors_language_for_kinds_and_times(app):
    """Kinds stayed English ("pledge charge") and an entry's time was a raw ISO string
    in every language; the hashed value stays available as the <time> element's own."""
    _settled_ledger(app)
    client = app.test_client()
    submit(client, "/language", {"locale": "de", "next": "/"}, form_page="/login")
    entry = client.get("/ledger/entry/0").get_data(as_text=True)
    raw = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', entry)
    assert raw, "the entry's time is a <time> element"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", raw.group(1))
    assert raw.group(2) != raw.group(1) and "UTC" in raw.group(2)
    assert "Abbuchung einer Zusage" in entry and "pledge charge" not in entry
    listing = client.get("/ledger").get_data(as_text=True)
    assert "Abbuchung einer Zusage" in listing and "Gebühr des Zahlungsdienstes" in listing
    assert "pledge charge" not in listing and "processor fee" not in listing


def test_an_empty_ledger_has_a_signed_checkpoint_that_verifies(app, tmp_path):
    """A new deployment's checkpoint URL answered 404 until the first money moved: an
    empty log has a signed checkpoint of size 0, and the standalone verifier accepts
    it."""
    client = app.test_client()
    response = client.get("/api/v1/ledger/checkpoint")
    assert response.status_code == 200, response.get_data(as_text=True)
    note = response.get_data(as_text=True)
    assert note.splitlines()[1] == "0"  # origin, tree size, root
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    result = _verify_offline(tmp_path, key, note)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_in_browser_proof_check_speaks_the_visitors_language(app):
    _settled_ledger(app)
    client = app.test_client()
    submit(client, "/language", {"locale": "es", "next": "/"}, form_page="/login")
    entry = client.get("/ledger/entry/1").get_data(as_text=True)
    verified = re.search(r'data-verified="([^"]+)"', entry).group(1)
    assert "Verified in your browser" not in verified and "1" in verified
    script = (ROOT / "static" / "js" / "verify-proof.js").read_text()
    assert "Verified in your browser" not in script  # no English left in the script


def test_a_leaf_is_encoded_exactly_as_docs_auditors_shows_it():
    """The leaf format is public (docs/auditors.md): anyone's verifier re-encodes each
    entry byte for byte. Our encoder must produce the documented bytes — version 1,
    sorted keys, no spaces, non-ASCII text as UTF-8 — or every auditor's check fails."""
    from datetime import datetime

    documented = re.search(
        r'```json\n(\{"campaign".*\})\n```', (ROOT / "docs" / "auditors.md").read_text()
    ).group(1)
    doc = log.leaf_document(
        kind=EntryKind.PLEDGE_CHARGE,
        campaign="riverside-warehouse-strike-fund",
        reference="charge-3f0c…",
        counterparty="night shift",
        memo="Pledge charged at the deadline",
        created_at=datetime(2026, 12, 12, 20, 6, 1, 123456),
        postings=[
            {"account": "supporters", "amount": -2500, "currency": "EUR"},
            {"account": "campaign:1", "amount": 2500, "currency": "EUR"},
        ],
    )
    assert log.encode(doc) == documented.encode("utf-8")
    assert "…".encode() in log.encode(doc)


def test_tree_nodes_are_fetched_whatever_their_number_and_a_missing_one_is_named(app):
    from ledger.models import LedgerTreeNode

    with app.app_context():
        # Nodes far above any real tree's (level 40), enough for several queries' worth.
        keys = [(40, index) for index in range(1200)]
        db.session.add_all(
            LedgerTreeNode(level=level, index=index, hash=index.to_bytes(32, "big"))
            for level, index in keys
        )
        db.session.flush()
        found = log.fetch_nodes(reversed(keys))
        assert found == {key: key[1].to_bytes(32, "big") for key in keys}
        missing = [(41, index) for index in range(7, 0, -1)]
        with pytest.raises(LookupError) as refused:
            log.fetch_nodes([keys[0], *missing])
        assert str(refused.value) == (
            "tree nodes missing: [(41, 1), (41, 2), (41, 3), (41, 4), (41, 5)]"
        )
        db.session.rollback()


def test_a_campaigns_exports_hold_its_entries_only(app):
    cid = _settled_ledger(app)
    with app.app_context():
        from campaigns.models import Campaign

        slug = db.session.get(Campaign, cid).slug
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=None,
            reference="platform-correction",
            postings=[("platform", Money(-5, "EUR")), ("payee:bank", Money(5, "EUR"))],
        )
        db.session.commit()
    client = app.test_client()
    everything = json.loads(client.get("/ledger/export.json").get_data(as_text=True))
    mine = json.loads(client.get(f"/c/{slug}/ledger/export.json").get_data(as_text=True))
    assert len(everything["entries"]) == 5
    assert [e["transaction"]["reference"] for e in everything["entries"]][-1] == (
        "platform-correction"
    )
    assert len(mine["entries"]) == 4
    assert {e["transaction"]["campaign"] for e in mine["entries"]} == {slug}
    rows = client.get(f"/c/{slug}/ledger/export.csv").get_data(as_text=True).splitlines()
    assert len(rows) == 1 + 8 and not any("platform-correction" in row for row in rows)


def _platform_entries(count: int) -> None:
    first = log.tree_size()
    for n in range(first, first + count):
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=None,
            reference=f"platform-{n}",
            postings=[("platform", Money(-5, "EUR")), ("payee:bank", Money(5, "EUR"))],
        )
    db.session.commit()


def test_the_sequencer_signs_only_a_tree_that_extends_the_last_checkpoint(app):
    """Before signing, the sequencer proves the tree consistent with the last signed
    checkpoint: one whose root this tree does not extend (a rewritten history) stops
    it, and keeps stopping it as the log grows, until an operator looks."""
    from ledger.models import LedgerCheckpoint

    with app.app_context():
        _platform_entries(2)
        assert log.latest_checkpoint() is None
        db.session.add(LedgerCheckpoint(tree_size=1, root_hash=b"\x07" * 32, note="forged"))
        db.session.commit()
        for _ in range(2):
            with pytest.raises(RuntimeError, match=r"^refusing to sign an inconsistent tree: "):
                log.sequence()
            db.session.rollback()
            assert log.latest_checkpoint().note == "forged"
            _platform_entries(1)


def test_the_sequencer_checks_against_the_latest_checkpoint_not_an_older_one(app):
    from ledger.models import LedgerCheckpoint

    with app.app_context():
        _platform_entries(1)
        assert log.sequence() == 1  # genuine, at 1
        _platform_entries(1)
        db.session.add(LedgerCheckpoint(tree_size=2, root_hash=b"\x07" * 32, note="forged"))
        db.session.commit()
        _platform_entries(1)
        with pytest.raises(RuntimeError, match=r"^refusing to sign an inconsistent tree: "):
            log.sequence()
        db.session.rollback()


def test_the_sequencer_says_how_many_entries_each_checkpoint_adds(app):
    with app.app_context():
        # An empty log is signed too (size 0), and grows from there.
        assert log.sequence() == 0
        assert log.latest_checkpoint().tree_size == 0
        assert log.sequence() == 0
        _platform_entries(1)
        assert log.sequence() == 1
        assert log.sequence() == 0
        _platform_entries(3)
        assert log.sequence() == 3
        assert log.latest_checkpoint().tree_size == 4
        assert log.latest_checkpoint().root_hash == merkle.root(4, log.fetch_nodes)


def test_a_configured_signing_key_signs_the_checkpoints(app):
    """Production sets LEDGER_SIGNING_KEY (base64 of a 32-byte seed): checkpoints are
    signed with that key, and the published verifier key is its public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from ledger import signing
    from verifier.counterfund_verify import verify_checkpoint

    seed = bytes(range(32))
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    app.config["LEDGER_SIGNING_KEY"] = base64.b64encode(seed).decode()
    try:
        with app.app_context():
            _platform_entries(1)
            log.sequence()
            note = log.latest_checkpoint().note
            key = signing.verifier_key()
            assert key.endswith(
                "+"
                + base64.b64encode(
                    b"\x01" + public.public_bytes(Encoding.Raw, PublicFormat.Raw)
                ).decode()
            )
            assert verify_checkpoint(note, key)[1] == 1
    finally:
        del app.config["LEDGER_SIGNING_KEY"]


def test_a_seed_file_with_stray_characters_is_refused(tmp_path):
    from ledger import signing

    seed = base64.b64encode(bytes(range(32))).decode()
    good = tmp_path / "good"
    good.write_text(seed + "\n")
    assert signing.read_seed(good) == bytes(range(32))
    for text in (seed[:10] + "*" + seed[10:], seed[:-4], "", "not base64 at all"):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(signing.SigningKeyError) as refused:
            signing.read_seed(bad)
        assert str(refused.value) == (
            f"{bad} does not hold a base64 Ed25519 seed of 32 bytes; restore it from a "
            "backup (the published verifier key depends on it)"
        )


def test_a_configured_signing_key_that_is_not_a_seed_stops_the_start(tmp_path):
    from ledger import signing

    seed = base64.b64encode(bytes(range(32))).decode()
    missing_file = {"LEDGER_SIGNING_KEY_FILE": str(tmp_path / "never-read")}
    signing.check_key({"LEDGER_SIGNING_KEY": seed, **missing_file})
    for text in (seed[:10] + "*" + seed[10:], seed[:-4], base64.b64encode(b"x" * 33).decode()):
        with pytest.raises(
            signing.SigningKeyError,
            match=r"^LEDGER_SIGNING_KEY is not a base64 Ed25519 seed of 32 bytes$",
        ):
            signing.check_key({"LEDGER_SIGNING_KEY": text, **missing_file})
    assert not (tmp_path / "never-read").exists()


def test_two_writers_appending_at_once_take_consecutive_leaves(app, backend):
    """The log has one writer at a time (PostgreSQL's advisory lock; SQLite's write
    lock): a transaction appending while another has appended and not yet committed
    waits for it, then takes the next leaf. Without the lock it read the same tree size,
    took the same leaf and failed on commit. The two touch different accounts, so no
    balance row makes them wait for each other instead (nor, since savepoints no longer
    bump it, the page-version row)."""
    outcome: dict[str, str] = {}
    first_appended, second_started = threading.Event(), threading.Event()

    def write(name: str, accounts: tuple[str, str]) -> None:
        with app.app_context():
            try:
                if name == "second":
                    first_appended.wait(10)
                    second_started.set()
                ledger.record(
                    EntryKind.ADJUSTMENT,
                    campaign_id=None,
                    reference=name,
                    postings=[(accounts[0], Money(-5, "EUR")), (accounts[1], Money(5, "EUR"))],
                )
                if name == "first":
                    first_appended.set()
                    second_started.wait(10)
                    _until_someone_waits(backend)
                db.session.commit()
                outcome[name] = "committed"
            except Exception as error:  # the outcome is what the test looks at
                db.session.rollback()
                outcome[name] = repr(error)

    threads = [
        threading.Thread(target=write, args=("first", ("platform", "payee:a"))),
        threading.Thread(target=write, args=("second", ("processor", "payee:b"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome == {"first": "committed", "second": "committed"}
    with app.app_context():
        leaves = db.session.execute(
            sa.text(
                "SELECT t.reference FROM ledger_leaves l"
                " JOIN ledger_transactions t ON t.id = l.transaction_id ORDER BY l.leaf_index"
            )
        ).scalars()
        assert list(leaves) == ["first", "second"]
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ledger", "checkpoint"]).exit_code == 0
    verified = runner.invoke(args=["ledger", "verify"])
    assert verified.exit_code == 0, verified.output


def _until_someone_waits(backend: str, kind: str = "advisory", waiting: int = 1) -> None:
    """Until `waiting` backends wait for a lock of `kind` (PostgreSQL: the log's
    advisory lock unless told otherwise); or a moment for the other writer to reach
    SQLite's write lock."""
    if backend != "postgresql":
        time.sleep(0.3)
        return
    with db.engine.connect() as observer:
        for _ in range(200):
            kinds = observer.execute(
                sa.text("SELECT locktype FROM pg_locks WHERE NOT granted")
            ).scalars()
            if len(found := list(kinds)) >= waiting:
                # Waiting on anything else (a row both touch) would hide a missing lock.
                assert set(found) == {kind}, found
                return
            time.sleep(0.05)
    raise AssertionError(f"{waiting} writer(s) never waited for a {kind} lock")


def _record_in_thread(app, name, postings, outcome, campaign_id=None):
    """A worker recording one entry in a transaction of its own; `outcome[name]` says
    whether it committed (or what stopped it)."""

    def write():
        with app.app_context():
            try:
                ledger.record(
                    EntryKind.ADJUSTMENT,
                    campaign_id=campaign_id,
                    reference=name,
                    postings=postings,
                )
                db.session.commit()
                outcome[name] = "committed"
            except Exception as error:  # the outcome is what the test looks at
                db.session.rollback()
                outcome[name] = repr(error)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_charge_and_a_refund_of_one_campaign_at_once_do_not_deadlock(app, backend):
    """Balances are locked in one order, whatever the entry: by account name. Credits
    first, as before, locked a charge's campaign before the supporters' account and a
    refund's supporters' account before the campaign: with a third transaction holding
    the fees' row for a moment, the two waited for each other and PostgreSQL killed
    one (a settlement job or a refund webhook failing with a deadlock)."""
    cid = make_campaign(app)
    account = ledger.campaign_account(cid)
    with app.app_context():
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=cid,
            reference="opening",
            postings=[
                (ledger.SUPPORTERS, Money(-1000, "EUR")),
                (account, Money(970, "EUR")),
                (ledger.PROCESSOR_FEES, Money(30, "EUR")),
            ],
        )
        db.session.commit()
    outcome: dict[str, str] = {}
    with app.app_context(), db.engine.connect() as fees_holder:
        fees_holder.execute(
            sa.text("UPDATE ledger_balances SET balance = balance WHERE account = :a"),
            {"a": ledger.PROCESSOR_FEES},
        )
        charge = _record_in_thread(
            app,
            "charge",
            [
                (ledger.SUPPORTERS, Money(-100, "EUR")),
                (account, Money(97, "EUR")),
                (ledger.PROCESSOR_FEES, Money(3, "EUR")),
            ],
            outcome,
            campaign_id=cid,
        )
        _until_someone_waits(backend, "transactionid")
        refund = _record_in_thread(
            app,
            "refund",
            [(account, Money(-50, "EUR")), (ledger.SUPPORTERS, Money(50, "EUR"))],
            outcome,
            campaign_id=cid,
        )
        _until_someone_waits(backend, "transactionid", waiting=2)
        fees_holder.commit()
    charge.join(30)
    refund.join(30)
    assert outcome == {"charge": "committed", "refund": "committed"}
    with app.app_context():
        assert ledger.balance(account, "EUR") == 970 + 97 - 50
        assert ledger.balance(ledger.SUPPORTERS, "EUR") == -1000 - 100 + 50


def test_an_entry_keeps_its_campaign_counterparty_and_memo_and_balances_per_currency(app):
    """What `record` is given is what the ledger holds; a balance is one account in
    one currency; a campaign's totals are its own account's postings only."""
    from ledger.models import LedgerTransaction

    first, second = make_campaign(app), make_campaign(app)
    with app.app_context():
        mine = ledger.campaign_account(first)
        described = ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=first,
            reference="described",
            postings=[(ledger.PLATFORM, Money(-700, "EUR")), (mine, Money(700, "EUR"))],
            counterparty="Print Co-operative",
            memo="Leaflets",
        )
        bare = ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=second,
            reference="bare",
            postings=[
                (ledger.PLATFORM, Money(-300, "USD")),
                (ledger.campaign_account(second), Money(300, "USD")),
            ],
        )
        ledger.record(
            EntryKind.ADJUSTMENT,
            campaign_id=first,
            reference="dollars",
            postings=[(ledger.PLATFORM, Money(-50, "USD")), (mine, Money(50, "USD"))],
        )
        db.session.commit()
        stored = {
            t.reference: (t.campaign_id, t.counterparty, t.memo)
            for t in db.session.scalars(select(LedgerTransaction))
        }
        assert stored["described"] == (first, "Print Co-operative", "Leaflets")
        assert stored["bare"] == (second, "", "")
        assert (described.reference, bare.reference) == ("described", "bare")
        assert ledger.balance(mine, "EUR") == 700
        assert ledger.balance(mine, "USD") == 50
        assert ledger.balance(mine, "GBP") == 0
        assert ledger.campaign_totals(first) == {"adjustment": 750}
        assert ledger.campaign_totals(second) == {"adjustment": 300}


def test_an_entry_that_does_not_balance_is_refused_with_its_reason(app):
    from ledger.models import LedgerTransaction

    with app.app_context():
        refusals = {
            "needs at least two postings": [(ledger.PLATFORM, Money(0, "EUR"))],
            r"postings of odd do not balance: \{'EUR': 1\}": [
                (ledger.PLATFORM, Money(-5, "EUR")),
                ("payee:x", Money(6, "EUR")),
            ],
        }
        for reason, postings in refusals.items():
            with pytest.raises(ledger.LedgerError, match=f"^a transaction {reason}$|^{reason}$"):
                ledger.record(
                    EntryKind.ADJUSTMENT, campaign_id=None, reference="odd", postings=postings
                )
        assert db.session.scalar(select(sa.func.count(LedgerTransaction.id))) == 0


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_first_postings_to_one_account_at_once_both_count(app, backend):
    """Two workers post to an account that has no balance row yet: the second's INSERT
    of the row waits for the first's, is refused once the first commits, and the
    second then adds to the row the first made: 5 + 5, nothing lost or doubled."""
    outcome: dict[str, str] = {}
    postings = [("a:new", Money(5, "EUR")), (ledger.PLATFORM, Money(-5, "EUR"))]
    with app.app_context():
        ledger.record(EntryKind.ADJUSTMENT, campaign_id=None, reference="first", postings=postings)
        second = _record_in_thread(app, "second", postings, outcome)
        _until_someone_waits(backend, "transactionid")
        db.session.commit()
    second.join(30)
    assert outcome == {"second": "committed"}
    with app.app_context():
        assert ledger.balance("a:new", "EUR") == 10
        assert ledger.balance(ledger.PLATFORM, "EUR") == -10
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ledger", "checkpoint"]).exit_code == 0
    verified = runner.invoke(args=["ledger", "verify"])
    assert verified.exit_code == 0, verified.output


def test_a_key_file_removed_under_a_running_app_does_not_change_its_key(app):
    """The published verifier key depends on the key the app started with: losing the
    file while it runs must not make it sign with a fresh one."""
    from pathlib import Path

    from ledger import signing

    with app.app_context():
        before = signing.verifier_key()
        Path(app.config["LEDGER_SIGNING_KEY_FILE"]).unlink()
        assert signing.verifier_key() == before


def test_a_campaign_account_cannot_start_below_zero_nor_go_there(app):
    from ledger.models import LedgerTransaction

    cid = make_campaign(app)
    with app.app_context():
        account = ledger.campaign_account(cid)
        below = f"^{account} cannot go below zero in EUR$"
        out = [(account, Money(-1, "EUR")), (ledger.PLATFORM, Money(1, "EUR"))]
        with pytest.raises(ledger.LedgerError, match=below):  # its first posting
            ledger.record(EntryKind.ADJUSTMENT, campaign_id=cid, reference="a", postings=out)
        into = [(account, Money(1, "EUR")), (ledger.PLATFORM, Money(-1, "EUR"))]
        ledger.record(EntryKind.ADJUSTMENT, campaign_id=cid, reference="b", postings=into)
        ledger.record(EntryKind.ADJUSTMENT, campaign_id=cid, reference="c", postings=out)
        assert ledger.balance(account, "EUR") == 0  # all of it may go
        with pytest.raises(ledger.LedgerError, match=below):
            ledger.record(EntryKind.ADJUSTMENT, campaign_id=cid, reference="d", postings=out)
        db.session.commit()
        references = db.session.scalars(select(LedgerTransaction.reference)).all()
        assert sorted(references) == ["b", "c"]

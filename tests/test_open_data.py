"""The open data dump: the whole public dataset in one archive, verifiable, licensed,
rebuilt daily."""

from __future__ import annotations

import io
import json
import os
import zipfile

from integrations import dump
from verifier.counterfund_verify import check_export, verify_checkpoint


def test_the_dump_holds_the_public_dataset_verifiably_and_nothing_personal(app):
    assert app.test_cli_runner().invoke(args=["demo", "load"]).exit_code == 0
    client = app.test_client()
    response = client.get("/data/counterfund-open-data.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert set(archive.namelist()) == {
        "README.txt",
        "campaigns.json",
        "rounds.json",
        "ledger-export.json",
        "checkpoints.json",
    }
    assert "CC BY 4.0" in archive.read("README.txt").decode()
    campaigns = json.loads(archive.read("campaigns.json"))
    assert len(campaigns) == 10 and any(c["updates"] for c in campaigns)
    rounds = json.loads(archive.read("rounds.json"))
    assert {r["status"] for r in rounds} == {"final", "open"}
    export = json.loads(archive.read("ledger-export.json"))
    [*_, latest] = json.loads(archive.read("checkpoints.json"))
    key = client.get("/api/v1/ledger/key").get_data(as_text=True).strip()
    _origin, size, root = verify_checkpoint(latest["note"], key)
    assert check_export(export["entries"], size, root) == size
    for name in archive.namelist():
        text = archive.read(name).decode()
        assert "@example.org" not in text and "pm_sim" not in text
    response.close()


def test_the_sweep_rebuilds_the_dump_once_a_day(app):
    with app.app_context():
        built = dump.build()
        first = built.stat().st_mtime_ns
        dump.rebuild_if_stale()
        assert built.stat().st_mtime_ns == first  # fresh: left alone
        day_old = built.stat().st_mtime - 25 * 3600
        os.utime(built, (day_old, day_old))
        dump.rebuild_if_stale()
        assert built.stat().st_mtime > day_old

"""The open data dump: the whole public dataset as one archive, rebuilt daily by the
sweep (and on first request), under a stated open licence.

    counterfund-open-data.zip
      README.txt          what each file is, when it was built, the licence
      campaigns.json      every public campaign as the API gives it, with its updates
      rounds.json         every matching round with its contributions and matches
      ledger-export.json  the ledger's JSON export (verifiable against checkpoints.json)
      checkpoints.json    every signed checkpoint, oldest first

Nothing in it is not already public on the site; supporters appear only in the
ledger, as they chose to (or as unlinkable tags)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from campaigns import services as campaign_services
from campaigns.api import campaign_json
from campaigns.models import Campaign, CampaignStatus
from core.clock import utcnow
from core.extensions import db
from ledger.models import LedgerCheckpoint
from ledger.views import json_export
from rounds.api import round_json
from rounds.services import public_rounds

FILENAME = "counterfund-open-data.zip"
MAX_AGE = timedelta(days=1)
LICENCE = "Creative Commons Attribution 4.0 International (CC BY 4.0)"
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"


def path() -> Path:
    return Path(current_app.config["OPEN_DATA_FOLDER"]) / FILENAME


def _campaigns() -> list[dict]:
    rows = db.session.scalars(
        campaign_services.public_campaigns()
        .where(Campaign.status != CampaignStatus.SUSPENDED)
        .order_by(Campaign.id)
    )
    return [
        campaign_json(c)
        | {
            "updates": [
                {
                    "title": u.title,
                    "body": u.body,
                    "published_at": u.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                for u in c.updates
            ]
        }
        for c in rows
    ]


def _checkpoints() -> list[dict]:
    rows = db.session.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size))
    return [{"tree_size": c.tree_size, "note": c.note} for c in rows]


def readme(built: str) -> str:
    return (
        f"Counterfund open data, built {built} from {current_app.config['PUBLIC_URL']}.\n\n"
        f"Licence: {LICENCE}, {LICENCE_URL}\n"
        'Credit: "Counterfund" and the address above.\n\n'
        "campaigns.json      every public campaign as the API gives it, with its updates\n"
        "rounds.json         every matching round with its contributions and matches\n"
        "ledger-export.json  the ledger's JSON export: check it against a signed\n"
        "                    checkpoint with verifier/counterfund_verify.py --export\n"
        "checkpoints.json    every signed checkpoint, oldest first\n"
    )


def build() -> Path:
    """Write the archive next to the old one, then move it into place (a download
    under way keeps reading the old file)."""
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    built = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("README.txt", readme(built))
            z.writestr("campaigns.json", json.dumps(_campaigns(), ensure_ascii=False, indent=1))
            rounds = [round_json(r, with_contributions=True) for r in public_rounds()]
            z.writestr("rounds.json", json.dumps(rounds, ensure_ascii=False, indent=1))
            with z.open("ledger-export.json", "w") as out:
                for chunk in json_export(None)():
                    out.write(chunk.encode())
            z.writestr("checkpoints.json", json.dumps(_checkpoints(), indent=1))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def rebuild_if_stale() -> None:
    """For the sweep: once a day."""
    target = path()
    if target.exists():
        age = utcnow().timestamp() - target.stat().st_mtime
        if age < MAX_AGE.total_seconds():
            return
    build()

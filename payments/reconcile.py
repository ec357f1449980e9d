"""Reconciliation: the ledger's charges and fees against the payment provider's own
records. Any difference is listed for operators; nothing is corrected automatically
(a correction is a new, compensating ledger entry that a person decides on)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.extensions import Model, db
from core.types import UTCDateTime
from ledger.models import EntryKind, LedgerPosting, LedgerTransaction
from ledger.services import SUPPORTERS
from payments.backends import get_backend
from payments.models import Pledge, PledgeEvent
from payments.privacy import public_reference


class ReconciliationReport(Model):
    __tablename__ = "reconciliation_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    backend: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(Text)  # JSON: counts and totals
    differences: Mapped[str] = mapped_column(Text)  # JSON list, no personal data

    @property
    def difference_list(self) -> list[dict]:
        return json.loads(self.differences)

    @property
    def summary_dict(self) -> dict:
        return json.loads(self.summary)


def _ledger_amounts() -> dict[str, dict[str, int]]:
    """Per ledger reference: what the supporters' account paid, and fees."""
    rows = db.session.execute(
        select(
            LedgerTransaction.kind,
            LedgerTransaction.reference,
            LedgerPosting.account,
            LedgerPosting.amount,
        )
        .join(LedgerPosting)
        .where(
            LedgerTransaction.kind.in_(
                [EntryKind.PLEDGE_CHARGE, EntryKind.PROCESSOR_FEE, EntryKind.REFUND]
            )
        )
    ).all()
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, reference, account, amount in rows:
        if kind == EntryKind.PLEDGE_CHARGE and account == SUPPORTERS:
            found[reference]["charge"] = -amount
        elif kind == EntryKind.REFUND and account == SUPPORTERS:
            found[reference]["refund"] = amount
        elif kind == EntryKind.PROCESSOR_FEE and amount > 0:
            found[reference]["fee"] = amount
    return found


def reconcile() -> ReconciliationReport:
    """Compare every charge the provider holds with the ledger, and the reverse."""
    backend = get_backend()
    provider: dict[str, list[dict]] = defaultdict(list)
    for record in backend.charge_records():
        provider[record["pledge_ref"]].append(record)
    ledger_rows = _ledger_amounts()
    pledges = {
        p.public_id: p.id
        for p in db.session.execute(
            select(Pledge.public_id, Pledge.id).where(Pledge.backend == backend.name)
        ).all()
    }
    # Refunds made at the processor, outside the app: recorded under their own ids.
    outside: dict[int, list[str]] = defaultdict(list)
    for refunded_id, refund_id in db.session.execute(
        select(PledgeEvent.pledge_id, PledgeEvent.detail).where(
            PledgeEvent.kind == "refunded_elsewhere"
        )
    ):
        outside[refunded_id].append(refund_id)
    differences: list[dict] = []
    matched = 0
    seen_references: set[str] = set()
    for pledge_ref, charges in provider.items():
        pledge_id = pledges.get(pledge_ref)
        if pledge_id is None:
            differences.append({"problem": "charge for no pledge of ours", "charges": len(charges)})
            continue
        found, matches = _compare(
            pledge_id, charges, ledger_rows, seen_references, outside.get(pledge_id, [])
        )
        differences.extend(found)
        matched += matches
    for reference, amounts in ledger_rows.items():
        if "charge" in amounts and reference not in seen_references:
            differences.append(
                {
                    "problem": "in the ledger, no charge at the provider",
                    "reference": reference,
                    "ledger_amount": amounts["charge"],
                }
            )
    report = ReconciliationReport(
        backend=backend.name,
        summary=json.dumps(
            {
                "provider_charges": sum(len(c) for c in provider.values()),
                "ledger_charges": sum("charge" in a for a in ledger_rows.values()),
                "matched": matched,
                "differences": len(differences),
            }
        ),
        differences=json.dumps(differences),
    )
    db.session.add(report)
    db.session.commit()
    return report


def _compare(
    pledge_id: int,
    charges: list[dict],
    ledger_rows: dict,
    seen_references: set[str],
    outside_refunds: list[str],
) -> tuple[list[dict], int]:
    """One pledge's charges at the provider against its ledger entries: the
    differences, and 1 when the charge is in the ledger at all (0 otherwise)."""
    differences: list[dict] = []
    charge_ref, fee_ref = (
        public_reference("charge", pledge_id),
        public_reference("fee", pledge_id),
    )
    seen_references.update({charge_ref, fee_ref})
    if len(charges) > 1:
        differences.append(
            {
                "problem": "charged more than once at the provider",
                "reference": charge_ref,
                "charges": len(charges),
            }
        )
    charged = sum(c["amount"] - c["refunded"] for c in charges)
    # A fee the processor has not reported yet (None) is no fee yet, on both sides:
    # the ledger records it when it is reported (payments.fees).
    fees = sum(c["fee"] or 0 for c in charges)
    in_ledger = ledger_rows.get(charge_ref, {}).get("charge")
    refund_ref = public_reference("refund", pledge_id)
    seen_references.add(refund_ref)
    if in_ledger is None:
        differences.append(
            {
                "problem": "charged at the provider, missing from the ledger",
                "reference": charge_ref,
                "provider_amount": charged,
            }
        )
        return differences, 0
    in_ledger -= ledger_rows.get(refund_ref, {}).get("refund", 0)
    for refund_id in outside_refunds:
        reference = public_reference("refund", pledge_id, refund_id)
        seen_references.add(reference)
        in_ledger -= ledger_rows.get(reference, {}).get("refund", 0)
    if in_ledger != charged:
        differences.append(
            {
                "problem": "amounts differ",
                "reference": charge_ref,
                "ledger_amount": in_ledger,
                "provider_amount": charged,
            }
        )
    if ledger_rows.get(fee_ref, {}).get("fee", 0) != fees:
        differences.append(
            {
                "problem": "fees differ",
                "reference": fee_ref,
                "ledger_fee": ledger_rows.get(fee_ref, {}).get("fee", 0),
                "provider_fee": fees,
            }
        )
    return differences, 1


def latest_report() -> ReconciliationReport | None:
    return db.session.scalar(
        select(ReconciliationReport).order_by(ReconciliationReport.id.desc()).limit(1)
    )

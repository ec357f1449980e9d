"""Batch disbursements: strike pay to 62 members as one disbursement. The public sees
the total, the number of payees, the purpose and a commitment to the list (never the
names, which would expose strikers to their employer); the committee keeps the list.

The commitment is the RFC 6962 Merkle root of the lines, each a canonical JSON
document {amount, currency, line, name, salt} (the random salt stops anyone from
guessing names against the hash). The root goes into the ledger entry's memo, so the
log fixes it for ever; a member given their line, with its inclusion proof, checks it
is in the batch with `counterfund_verify.py --batch-line`.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import BigInteger, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import Model, db
from core.money import Money, MoneyError
from core.text import single_line
from ledger import merkle

MAX_LINES = 5000


class DisbursementLine(Model):
    """One payee of a batch: seen by the committee only."""

    __tablename__ = "disbursement_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    disbursement_id: Mapped[int] = mapped_column(ForeignKey("disbursements.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(120))
    amount: Mapped[int] = mapped_column(BigInteger)
    salt: Mapped[str] = mapped_column(String(32))


@dataclass(frozen=True)
class Line:
    position: int
    name: str
    amount: int
    currency: str
    salt: str

    def leaf(self) -> bytes:
        return json.dumps(
            {
                "amount": self.amount,
                "currency": self.currency,
                "line": self.position,
                "name": self.name,
                "salt": self.salt,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()


class BatchError(ValueError):
    pass


def parse(text: str, currency: str, locale: str) -> list[tuple[str, Money]]:
    """`name; amount` per line, amounts read in the visitor's locale. Raises BatchError
    naming the first line it cannot read."""
    found = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        if not raw.strip():
            continue
        name, separator, amount = raw.rpartition(";")
        name = (single_line(name) or "").strip()
        if not separator or not name:
            raise BatchError(_l("Line %(n)d: write “name; amount”.", n=number))
        try:
            money = Money.parse(amount.strip(), currency, locale)
        except MoneyError as exc:
            raise BatchError(_l("Line %(n)d: %(problem)s", n=number, problem=str(exc))) from None
        if money.amount <= 0:
            raise BatchError(_l("Line %(n)d: the amount must be more than zero.", n=number))
        found.append((name[:120], money))
    if len(found) < 2:
        raise BatchError(_l("A batch pays at least two people."))
    if len(found) > MAX_LINES:
        raise BatchError(_l("A batch pays at most %(n)d people.", n=MAX_LINES))
    return found


def lines_for(payees: list[tuple[str, Money]]) -> list[Line]:
    return [
        Line(n, name, money.amount, money.currency, secrets.token_hex(16))
        for n, (name, money) in enumerate(payees)
    ]


def _tree(lines: list[Line]) -> dict[merkle.Node, bytes]:
    return merkle.new_nodes(0, [merkle.leaf_hash(line.leaf()) for line in lines], lambda _: {})


def commitment(lines: list[Line]) -> str:
    nodes = _tree(lines)
    return merkle.root(len(lines), lambda keys: {k: nodes[k] for k in keys}).hex()


def store(disbursement_id: int, lines: list[Line]) -> None:
    db.session.add_all(
        DisbursementLine(
            disbursement_id=disbursement_id,
            position=line.position,
            name=line.name,
            amount=line.amount,
            salt=line.salt,
        )
        for line in lines
    )
    db.session.flush()


def stored_lines(disbursement_id: int, currency: str) -> list[Line]:
    rows = db.session.scalars(
        select(DisbursementLine)
        .where(DisbursementLine.disbursement_id == disbursement_id)
        .order_by(DisbursementLine.position)
    )
    return [Line(r.position, r.name, r.amount, currency, r.salt) for r in rows]


def line_receipt(lines: list[Line], position: int) -> dict[str, Any]:
    """What a member is given to check their line: the line, its proof, the root."""
    nodes = _tree(lines)

    def fetch(keys):
        return {k: nodes[k] for k in keys}

    return {
        "leaf": base64.b64encode(lines[position].leaf()).decode(),
        "index": position,
        "size": len(lines),
        "proof": [
            base64.b64encode(h).decode()
            for h in merkle.inclusion_proof(position, len(lines), fetch)
        ],
        "commitment": merkle.root(len(lines), fetch).hex(),
    }

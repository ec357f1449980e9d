"""Disbursements: a treasurer records one, a second organizer approves it (the
two-person rule), and only then does it enter the ledger, with its receipt public."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from pathlib import Path

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from campaigns.models import Campaign, Permission, role_can
from campaigns.notifications import tell_committee
from core.clock import utcnow
from core.extensions import Model, changed, db
from core.i18n import format_money
from core.images import UploadError, reencode_image, strip_pdf
from core.money import Money
from core.states import StateMachine, Transition
from core.types import UTCDateTime, enum_check
from core.urls import public_url_for
from core.work import RuleError
from ledger import batches
from ledger import services as ledger
from ledger.models import EntryKind

# Receipts are read on screens; larger photos are scaled down when re-encoded.
RECEIPT_MAX_SIDE = 3000
RECEIPT_TYPES = {
    b"%PDF-": ("pdf", "application/pdf"),
    b"\x89PNG\r\n\x1a\n": ("png", "image/png"),
    b"\xff\xd8\xff": ("jpg", "image/jpeg"),
}


class DisbursementError(RuleError):
    """A disbursement rule refused the request (the message names the field's problem)."""


class DisbursementStatus(enum.StrEnum):
    PENDING = "pending"  # recorded by a treasurer, waiting for a second member
    APPROVED = "approved"  # on the ledger
    REJECTED = "rejected"


D = DisbursementStatus
DISBURSEMENT_MACHINE = StateMachine(
    "disbursement",
    [D.PENDING],
    [
        Transition("approve", (D.PENDING,), D.APPROVED, "a second organizer approves"),
        Transition("reject", (D.PENDING,), D.REJECTED, "an organizer rejects"),
    ],
)


def _decide(disbursement: Disbursement, event: str, user: User) -> bool:
    """The guarded move of the table's `event`: False when it was decided meanwhile."""
    transition = DISBURSEMENT_MACHINE.by_event[event]
    return bool(
        changed(
            update(Disbursement)
            .where(
                Disbursement.id == disbursement.id,
                Disbursement.status.in_(transition.sources),
            )
            .values(status=transition.target, approved_by=user.id, decided_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    )


class Disbursement(Model):
    __tablename__ = "disbursements"
    __table_args__ = (enum_check("status", DisbursementStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    payee: Mapped[str] = mapped_column(String(120))
    purpose: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    receipt_file: Mapped[str] = mapped_column(String(80))
    receipt_type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default=DisbursementStatus.PENDING)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reference: Mapped[str] = mapped_column(String(60), unique=True)
    # A batch (ledger.batches): how many payees, and the Merkle root of their list.
    payee_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    commitment: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()
    recorder: Mapped[User] = relationship(foreign_keys=[recorded_by])
    approver: Mapped[User | None] = relationship(foreign_keys=[approved_by])

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


def receipts_folder() -> Path:
    # Outside the web root: served only through the receipt view, with a fixed type.
    folder = Path(current_app.config["UPLOAD_FOLDER"]) / "receipts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def store_receipt(stream) -> tuple[str, str]:
    limit = current_app.config["RECEIPT_MAX_BYTES"]
    data = stream.read(limit + 1)
    if not data:
        raise DisbursementError(_l("Attach the receipt (PDF, PNG or JPEG)."), "receipt")
    if len(data) > limit:
        raise DisbursementError(
            _l("The receipt is larger than %(mb).1f MB.", mb=limit / 1048576), "receipt"
        )
    for magic, (extension, mimetype) in RECEIPT_TYPES.items():
        if data.startswith(magic):
            try:
                if extension == "pdf":
                    clean = strip_pdf(data, max_pixels=current_app.config["COVER_IMAGE_MAX_PIXELS"])
                else:
                    clean, extension = reencode_image(
                        data,
                        max_pixels=current_app.config["COVER_IMAGE_MAX_PIXELS"],
                        max_side=RECEIPT_MAX_SIDE,
                    )
                    mimetype = "image/png" if extension == "png" else "image/jpeg"
            except UploadError as exc:
                raise DisbursementError(str(exc), "receipt") from None
            name = f"{secrets.token_urlsafe(16)}.{extension}"
            (receipts_folder() / name).write_bytes(clean)
            return name, mimetype
    raise DisbursementError(_l("The receipt must be a PDF, PNG or JPEG file."), "receipt")


def record(
    campaign: Campaign,
    user: User,
    *,
    payee: str,
    purpose: str,
    amount: Money,
    receipt: tuple[str, str],
    batch: list[batches.Line] | None = None,
) -> Disbursement:
    """Record a disbursement for approval. With `batch`, it pays many people: the public
    payee is their number, and the list (committee only) is committed to."""
    if not role_can(campaign.role_of(user), Permission.RECORD_DISBURSEMENT):
        raise DisbursementError(_l("Only the campaign's treasurer records disbursements."))
    if amount.currency != campaign.currency or amount.amount <= 0:
        raise DisbursementError(_l("Give an amount in %(c)s.", c=campaign.currency), "amount")
    available = ledger.balance(ledger.campaign_account(campaign.id), campaign.currency)
    if amount.amount > available:
        raise DisbursementError(
            _l(
                "The campaign holds %(m)s: a disbursement cannot be larger.",
                m=format_money(Money(available, campaign.currency)),
            ),
            "amount",
        )
    if batch and sum(line.amount for line in batch) != amount.amount:
        raise DisbursementError(
            _l(
                "The payees' amounts add up to %(total)s, not %(m)s.",
                total=format_money(Money(sum(line.amount for line in batch), campaign.currency)),
                m=format_money(amount),
            ),
            "batch",
        )
    if batch:
        # The ledger's words are the same in every language, like its memos.
        payee = f"{len(batch)} payees (batch)"
    disbursement = Disbursement(
        campaign_id=campaign.id,
        payee_count=len(batch) if batch else 1,
        commitment=batches.commitment(batch) if batch else "",
        payee=payee.strip(),
        purpose=purpose.strip(),
        amount=amount.amount,
        currency=amount.currency,
        receipt_file=receipt[0],
        receipt_type=receipt[1],
        recorded_by=user.id,
        reference="disbursement-" + secrets.token_hex(8),
    )
    db.session.add(disbursement)
    db.session.flush()
    if batch:
        batches.store(disbursement.id, batch)
    tell_committee(
        campaign,
        "disbursement-waiting",
        except_user_id=user.id,
        permission=Permission.APPROVE_DISBURSEMENT,
        recorder=user.display_name,
        amount=amount,
        payee=disbursement.payee,
        approve_link=public_url_for("disbursements.listing", slug=campaign.slug),
    )
    return disbursement


def approve(disbursement: Disbursement, user: User) -> None:
    campaign = disbursement.campaign
    if not role_can(campaign.role_of(user), Permission.APPROVE_DISBURSEMENT):
        raise DisbursementError(_l("Only the campaign's organizers approve disbursements."))
    if user.id == disbursement.recorded_by:
        raise DisbursementError(
            _l("Someone other than the treasurer who recorded it must approve it.")
        )
    if not _decide(disbursement, "approve", user):
        raise DisbursementError(_l("This disbursement was already decided."))
    try:
        ledger.record(
            EntryKind.DISBURSEMENT,
            campaign_id=campaign.id,
            reference=disbursement.reference,
            postings=[
                (ledger.campaign_account(campaign.id), -disbursement.money),
                (_payee_account(disbursement), disbursement.money),
            ],
            counterparty=disbursement.payee,
            memo=_memo(disbursement),
        )
    except ledger.LedgerError:
        raise DisbursementError(
            _l("The campaign no longer holds enough for this disbursement.")
        ) from None


def _payee_account(disbursement: Disbursement) -> str:
    if disbursement.commitment:
        return f"payees:{disbursement.reference}"
    return f"payee:{disbursement.payee[:70]}"


def _memo(disbursement: Disbursement) -> str:
    """The purpose; for a batch, also its size and the commitment to its list (English,
    like every memo: the ledger is the same for everyone)."""
    if not disbursement.commitment:
        return disbursement.purpose[:500]
    batch = f" [batch of {disbursement.payee_count}; list sha256 root {disbursement.commitment}]"
    return disbursement.purpose[: 500 - len(batch)] + batch


def reject(disbursement: Disbursement, user: User) -> None:
    if disbursement.campaign.role_of(user) is None:
        raise DisbursementError(_l("Only the campaign's organizers decide disbursements."))
    if not _decide(disbursement, "reject", user):
        raise DisbursementError(_l("This disbursement was already decided."))

"""The payment backend interface: what pledges and settlement need from a provider.

Both implementations speak in our own ids: every object they create carries our
pledge's public id in its metadata, and every call that moves money carries an
idempotency key built from our own row ids, stored before the call is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.money import Money


class BackendError(RuntimeError):
    """The provider could not be reached or answered unexpectedly; safe to retry."""


class CardError(ValueError):
    """The provider refused the card; `code` is Stripe's decline code."""

    def __init__(self, message: str, code: str = "card_declined"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SetupSession:
    """What the card page needs to collect and save a card."""

    setup_id: str
    client_secret: str


@dataclass(frozen=True)
class SavedCard:
    """Outcome of saving a card: status is 'succeeded', 'requires_action' or 'failed'."""

    status: str
    payment_method_id: str | None = None
    brand: str = ""
    last4: str = ""
    decline_code: str = ""
    pledge_ref: str = ""
    # The provider's fingerprint of the card number (Stripe's card.fingerprint): the
    # same card gives the same fingerprint, whoever saves it. Kept only as a keyed hash
    # (Pledge.card_tag), to count a matching round's distinct backers.
    fingerprint: str = ""


@dataclass(frozen=True)
class ChargeResult:
    """status: 'succeeded', 'requires_action' (authentication), 'failed', or (only from
    payment_state) 'processing'."""

    status: str
    charge_id: str | None
    amount: int
    currency: str
    fee: int = 0
    decline_code: str = ""
    # The processor has not said what it keeps yet (Stripe's balance transaction comes
    # when the money settles): `fee` is 0 for now and is recorded when known.
    fee_pending: bool = False
    # The charge waits for the supporter's bank in their browser: Stripe.js can run its
    # next action (3-D Secure) with the charge's client secret.
    next_action: bool = False

    @property
    def charged(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def fee_money(self) -> Money:
        return Money(self.fee, self.currency)


@dataclass(frozen=True)
class ProviderRefund:
    """A refund the provider holds for a charge, whoever made it (us, or someone in
    the provider's dashboard)."""

    id: str
    amount: int
    currency: str
    status: str  # 'succeeded', 'pending', 'failed' or 'canceled'


@dataclass(frozen=True)
class DisputeMovement:
    """Money a dispute moved at the provider (a balance transaction): negative when
    withdrawn from us, positive when reinstated; the fee is what the processor kept."""

    id: str
    amount: int
    fee: int


@dataclass(frozen=True)
class ProviderDispute:
    id: str
    charge_id: str  # our provider_charge_id (the PaymentIntent, for Stripe)
    amount: int
    currency: str
    status: str  # needs_response, under_review, won, lost, …
    reason: str
    movements: tuple[DisputeMovement, ...]
    evidence_due_by: datetime | None = None


class PaymentBackend(Protocol):
    name: str
    # Whether real money moves (a live Stripe key); webhooks must agree with it.
    livemode: bool

    def create_customer(self, pledge_ref: str) -> str:
        """A customer object for this pledge (no personal data); returns its id."""

    def start_setup(self, pledge_ref: str, customer_id: str) -> SetupSession:
        """An off-session SetupIntent on the customer, for the browser to confirm."""

    def saved_card(self, setup_id: str) -> SavedCard:
        """Look up how saving the card went (after the browser confirmed it)."""

    def charge(
        self,
        *,
        pledge_ref: str,
        amount: Money,
        customer_id: str,
        payment_method_id: str,
        idempotency_key: str,
        on_session: bool = False,
    ) -> ChargeResult:
        """Charge a saved card (off-session unless the supporter is present to
        authenticate); the same key never charges twice."""

    def find_charge(self, pledge_ref: str, customer_id: str) -> ChargeResult | None:
        """The successful charge for this pledge, if the provider made one."""

    def payment_state(self, charge_id: str) -> ChargeResult:
        """A charge's state now (after the supporter's bank had its say)."""

    def next_action_secret(self, charge_id: str) -> str | None:
        """The client secret Stripe.js needs to run the next action (3-D Secure) of a
        charge that waits for the supporter; None when it no longer waits."""

    def charge_fee(self, charge_id: str) -> int | None:
        """What the processor kept of a charge, or None while it has not said."""

    def refund(self, charge_id: str, amount: Money, idempotency_key: str) -> str:
        """Refund (part of) a charge; returns the refund id."""

    def refunds_of(self, charge_id: str) -> list[ProviderRefund]:
        """Every refund of a charge at the provider, oldest first."""

    def dispute(self, dispute_id: str) -> ProviderDispute:
        """A dispute's current state at the provider, with the money it moved."""

    def submit_dispute_evidence(self, dispute_id: str, explanation: str) -> ProviderDispute:
        """Send operators' answer to a dispute (submitted at once); its new state."""

    def charge_records(self):
        """Every successful charge the provider holds: dicts with pledge_ref, amount,
        currency, fee (None while the provider has not said) and refunded
        (reconciliation reads these)."""

    def release(self, customer_id: str, payment_method_id: str | None) -> None:
        """Detach a saved card (or, with None, every card of the customer)."""

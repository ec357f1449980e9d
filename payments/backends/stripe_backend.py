"""Stripe, through the official library's StripeClient.

Every customer, SetupIntent and PaymentIntent carries our pledge's public id in its
metadata. Nothing personal is sent: no email, no name (Stripe gets the card itself
from Stripe.js in the supporter's browser, never from us).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import stripe

from core.money import Money
from payments.backends.base import (
    BackendError,
    ChargeResult,
    DisputeMovement,
    ProviderDispute,
    ProviderRefund,
    SavedCard,
    SetupSession,
)


def metadata_of(obj) -> dict:
    metadata = getattr(obj, "metadata", None)
    return metadata.to_dict() if metadata else {}


class StripeBackend:
    name = "stripe"

    def __init__(self, secret_key: str, api_base: str = ""):
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else {}, max_network_retries=2
        )
        self.livemode = secret_key.startswith("sk_live_")

    def create_customer(self, pledge_ref: str) -> str:
        try:
            customer = self.client.v1.customers.create(params={"metadata": {"pledge": pledge_ref}})
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return customer.id

    def start_setup(self, pledge_ref: str, customer_id: str) -> SetupSession:
        try:
            # Cards only: a pledge is charged off-session, with no redirect. The API
            # (and localstripe) take payment_method_types; stripe-python 16 types only
            # its successor, allowed_payment_method_types.
            params: stripe.params.SetupIntentCreateParams = {  # type: ignore[typeddict-unknown-key]
                "customer": customer_id,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": {"pledge": pledge_ref},
            }
            intent = self.client.v1.setup_intents.create(params=params)
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return SetupSession(setup_id=intent.id, client_secret=intent.client_secret or "")

    def saved_card(self, setup_id: str) -> SavedCard:
        try:
            intent = self.client.v1.setup_intents.retrieve(setup_id)
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        pledge_ref = metadata_of(intent).get("pledge", "")
        if intent.status != "succeeded":
            status = "requires_action" if intent.status == "requires_action" else "failed"
            if intent.status == "requires_payment_method" and not intent.payment_method:
                status = "requires_payment_method"
            return SavedCard(status=status, pledge_ref=pledge_ref)
        method_id = intent.payment_method
        if method_id is None:
            return SavedCard(status="failed", pledge_ref=pledge_ref)
        if not isinstance(method_id, str):
            method_id = method_id.id
        brand = last4 = fingerprint = ""
        try:
            method = self.client.v1.payment_methods.retrieve(method_id)
            card = getattr(method, "card", None)
            if card is not None:
                brand, last4 = card.brand or "", card.last4 or ""
                fingerprint = getattr(card, "fingerprint", None) or ""
        except stripe.StripeError:
            pass  # the card's brand and last digits are a courtesy, not required
        return SavedCard(
            status="succeeded",
            payment_method_id=method_id,
            brand=brand,
            last4=last4,
            pledge_ref=pledge_ref,
            fingerprint=fingerprint,
        )

    def charge(
        self,
        *,
        pledge_ref,
        amount: Money,
        customer_id,
        payment_method_id,
        idempotency_key,
        on_session: bool = False,
    ) -> ChargeResult:
        try:
            intent = self.client.v1.payment_intents.create(
                params={
                    "amount": amount.amount,
                    "currency": amount.currency.lower(),
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "off_session": not on_session,
                    "confirm": True,
                    "metadata": {"pledge": pledge_ref},
                    # The fee is on the charge's balance transaction: one round trip.
                    "expand": [CHARGE_BALANCE],
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            code = exc.code or "card_declined"
            declined = getattr(exc.error, "payment_intent", None) if exc.error else None
            if code == "authentication_required":
                return ChargeResult(
                    "requires_action",
                    declined.id if declined else None,
                    amount.amount,
                    amount.currency,
                    decline_code=code,
                )
            decline = (exc.error.decline_code if exc.error else None) or code
            return ChargeResult(
                "failed",
                declined.id if declined else None,
                amount.amount,
                amount.currency,
                decline_code=decline,
            )
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return self._result(intent)

    @staticmethod
    def _result(intent) -> ChargeResult:
        status = {
            "succeeded": "succeeded",
            "requires_action": "requires_action",
            "processing": "processing",
        }.get(intent.status, "failed")
        fee = _fee_of(intent) if status == "succeeded" else 0
        error = getattr(intent, "last_payment_error", None)
        return ChargeResult(
            status,
            intent.id,
            intent.amount,
            intent.currency.upper(),
            fee=fee or 0,
            decline_code=(getattr(error, "code", None) or "") if status == "failed" else "",
            fee_pending=fee is None,
            next_action=intent.status == "requires_action",
        )

    def _intent(self, intent_id: str):
        try:
            return self.client.v1.payment_intents.retrieve(
                intent_id, params={"expand": [CHARGE_BALANCE]}
            )
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc

    def payment_state(self, charge_id: str) -> ChargeResult:
        return self._result(self._intent(charge_id))

    def next_action_secret(self, charge_id: str) -> str | None:
        intent = self._intent(charge_id)
        return intent.client_secret if intent.status == "requires_action" else None

    def charge_fee(self, charge_id: str) -> int | None:
        return _fee_of(self._intent(charge_id))

    def find_charge(self, pledge_ref: str, customer_id: str) -> ChargeResult | None:
        try:
            intents = self.client.v1.payment_intents.list(params={"customer": customer_id})
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        for intent in intents.auto_paging_iter():
            if metadata_of(intent).get("pledge") == pledge_ref and intent.status == "succeeded":
                return self._result(intent)
        return None

    def charge_records(self):
        """Every succeeded PaymentIntent carrying one of our pledge ids, with what its
        charge's balance transaction says: the amount that reached us and the fee."""
        try:
            intents = self.client.v1.payment_intents.list(
                params={"limit": 100, "expand": [f"data.{CHARGE_BALANCE}"]}
            )
            for intent in intents.auto_paging_iter():
                pledge_ref = metadata_of(intent).get("pledge")
                if pledge_ref and intent.status == "succeeded":
                    balance = _balance_of(intent)
                    yield {
                        "pledge_ref": pledge_ref,
                        "amount": balance.amount if balance is not None else intent.amount,
                        "currency": intent.currency.upper(),
                        "fee": balance.fee if balance is not None else None,
                        "refunded": self._refunded(intent),
                    }
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc

    def refunds_of(self, charge_id: str) -> list[ProviderRefund]:
        try:
            listed = self.client.v1.refunds.list(params={"payment_intent": charge_id})
            found = [
                ProviderRefund(r.id, r.amount, r.currency.upper(), r.status or "")
                for r in listed.auto_paging_iter()
            ]
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return found

    def dispute(self, dispute_id: str) -> ProviderDispute:
        """localstripe has no disputes (404): tests stub this with signed events."""
        try:
            found = self.client.v1.disputes.retrieve(
                dispute_id, params={"expand": ["balance_transactions"]}
            )
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return _dispute_of(found)

    def submit_dispute_evidence(self, dispute_id: str, explanation: str) -> ProviderDispute:
        try:
            found = self.client.v1.disputes.update(
                dispute_id,
                params={
                    "evidence": {"uncategorized_text": explanation},
                    "submit": True,
                    "expand": ["balance_transactions"],
                },
            )
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return _dispute_of(found)

    def _refunded(self, intent) -> int:
        """What was refunded of the intent's charge, by us or in Stripe's dashboard."""
        charge = getattr(intent, "latest_charge", None)
        if isinstance(charge, str):
            charge = self.client.v1.charges.retrieve(charge)
        return int(getattr(charge, "amount_refunded", 0) or 0) if charge is not None else 0

    def refund(self, charge_id: str, amount: Money, idempotency_key: str) -> str:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": charge_id, "amount": amount.amount},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc
        return refund.id

    def release(self, customer_id: str, payment_method_id: str | None) -> None:
        try:
            if payment_method_id:
                methods = [payment_method_id]
            else:
                listed = self.client.v1.payment_methods.list(
                    params={"customer": customer_id, "type": "card"}
                )
                methods = [m.id for m in listed.auto_paging_iter()]
            for method_id in methods:
                # Already detached is fine: releasing twice must be harmless.
                with contextlib.suppress(stripe.InvalidRequestError):
                    self.client.v1.payment_methods.detach(method_id)
        except stripe.StripeError as exc:
            raise BackendError(f"Stripe: {type(exc).__name__}") from exc


# The charge of a PaymentIntent, with its balance transaction (amount, fee) embedded.
CHARGE_BALANCE = "latest_charge.balance_transaction"


def _balance_of(intent):
    """The balance transaction of the intent's charge, when Stripe has made it."""
    charge = getattr(intent, "latest_charge", None)
    balance = getattr(charge, "balance_transaction", None) if charge is not None else None
    return None if balance is None or isinstance(balance, str) else balance


def _fee_of(intent) -> int | None:
    """What Stripe kept of a succeeded charge, or None while its balance transaction
    has not come (it can lag behind the charge)."""
    balance = _balance_of(intent)
    return int(balance.fee) if balance is not None else None


def _dispute_of(found) -> ProviderDispute:
    details = getattr(found, "evidence_details", None)
    due_by = getattr(details, "due_by", None) if details is not None else None
    return ProviderDispute(
        id=found.id,
        charge_id=str(getattr(found, "payment_intent", "") or ""),
        amount=found.amount,
        currency=found.currency.upper(),
        status=found.status,
        reason=getattr(found, "reason", "") or "",
        movements=tuple(
            DisputeMovement(t.id, t.amount, t.fee)
            for t in (getattr(found, "balance_transactions", None) or [])
        ),
        evidence_due_by=datetime.fromtimestamp(due_by, UTC) if due_by else None,
    )

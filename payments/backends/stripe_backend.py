"""Stripe, through the official library's StripeClient.

Every customer, SetupIntent and PaymentIntent carries our pledge's public id in its
metadata. Nothing personal is sent: no email, no name (Stripe gets the card itself
from Stripe.js in the supporter's browser, never from us).
"""

from __future__ import annotations

import contextlib

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
        status = {"succeeded": "succeeded", "requires_action": "requires_action"}.get(
            intent.status, "failed"
        )
        return ChargeResult(status, intent.id, intent.amount, intent.currency.upper())

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
        """Every succeeded PaymentIntent carrying one of our pledge ids. Stripe's fees
        live in balance transactions, which this does not read yet (fee 0)."""
        try:
            intents = self.client.v1.payment_intents.list(params={"limit": 100})
            for intent in intents.auto_paging_iter():
                pledge_ref = metadata_of(intent).get("pledge")
                if pledge_ref and intent.status == "succeeded":
                    yield {
                        "pledge_ref": pledge_ref,
                        "amount": intent.amount,
                        "currency": intent.currency.upper(),
                        "fee": 0,
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
        )

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

"""Choose the payment backend from PAYMENT_BACKEND; one instance per app."""

from __future__ import annotations

from flask import Flask, current_app

from payments.backends.base import BackendError, PaymentBackend, SavedCard


def init_backend(app: Flask) -> None:
    backend: PaymentBackend
    if app.config["PAYMENT_BACKEND"] == "stripe":
        from payments.backends.stripe_backend import StripeBackend

        backend = StripeBackend(app.config["STRIPE_SECRET_KEY"], app.config["STRIPE_API_BASE"])
    else:
        from payments.backends.simulated import SimulatedBackend, SimulatedProvider

        provider = SimulatedProvider(
            app.config["SIMULATED_PROVIDER_DB"],
            latency=app.config["SIMULATED_LATENCY"],
            rate_limit=app.config["SIMULATED_RATE_LIMIT"],
        )
        backend = SimulatedBackend(provider)
    app.extensions["payment_backend"] = backend


def get_backend() -> PaymentBackend:
    return current_app.extensions["payment_backend"]


def enter_simulated_card(setup_id: str, card_number: str) -> SavedCard:
    """The simulated provider's stand-in for Stripe.js (the demo and tests): the card
    number goes to the provider directly. Never with a real provider, whose cards only
    ever reach it from the supporter's browser."""
    from payments.backends.simulated import SimulatedBackend

    backend = get_backend()
    if not isinstance(backend, SimulatedBackend):
        raise BackendError("cards are entered in the provider's own form")
    return backend.provider.confirm_setup(setup_id, card_number)

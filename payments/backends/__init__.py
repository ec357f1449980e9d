"""Choose the payment backend from PAYMENT_BACKEND; one instance per app."""

from __future__ import annotations

from flask import Flask, current_app

from payments.backends.base import PaymentBackend


def init_backend(app: Flask) -> None:
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

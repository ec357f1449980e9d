"""Payments: pledges, payment backends (simulated, Stripe), webhooks, settlement."""

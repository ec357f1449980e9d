"""A card the provider saved for a pledge: one path, whether the supporter's browser
comes back from the provider's form or the provider's webhook arrives first (or both,
in any order)."""

from __future__ import annotations

from core.jobs import enqueue_after_commit
from payments import emails, jobs, lifecycle, services
from payments.backends.base import SavedCard
from payments.models import Pledge, PledgeStatus


def apply_saved_card(pledge: Pledge, saved: SavedCard) -> str:
    """Activate a pending pledge, or put the new card on an active or declined one.
    After the caller's commit, the card it replaced is detached at the provider and a
    declined pledge is retried at once. Safe to replay.

    Returns "activated", "not_saved", "card_replaced" or "unchanged"; raises
    PledgeError when the pledge can no longer take a card (settlement has it)."""
    try:
        if pledge.status == PledgeStatus.PENDING:
            return "activated" if services.card_saved(pledge, saved) else "not_saved"
        if saved.status != "succeeded":
            return "unchanged"  # a late failure never undoes a saved card
        old_method = services.card_replaced(pledge, saved)
        if old_method and pledge.recurring:
            _to_declined_period_charges(pledge, saved)
    except lifecycle.StaleState:
        return "unchanged"  # the other path got there first
    if old_method:
        emails.card_replaced(pledge)
    if old_method and pledge.provider_customer_id:
        enqueue_after_commit(jobs.release_card, pledge.provider_customer_id, old_method)
    if pledge.retry_requested:
        enqueue_after_commit(jobs.charge_campaign, pledge.campaign_id)
    return "card_replaced" if old_method else "unchanged"


def _to_declined_period_charges(standing: Pledge, saved: SavedCard) -> None:
    """A standing pledge's new card also goes to its period charges that were declined
    and are still being retried, which are then retried at once."""
    for charge in services.period_charges(standing):
        if charge.status in (PledgeStatus.FAILED, PledgeStatus.NEEDS_AUTHENTICATION):
            services.card_replaced(charge, saved)
            enqueue_after_commit(jobs.charge_campaign, charge.campaign_id)


def cancel(pledge: Pledge, *, tell_supporter: bool = True) -> None:
    """The supporter cancels: the pledge ends (they are emailed a confirmation), and
    after the commit its card is detached at the provider (nothing can be charged to
    it any more)."""
    if services.cancel(pledge) and tell_supporter:
        emails.cancelled(pledge)
    if pledge.provider_customer_id:
        enqueue_after_commit(jobs.release_card, pledge.provider_customer_id, None)

"""What each webhook event says, built from the signals of the packages below, inside
the transaction of the change (integrations.webhooks.queue). Payloads name supporters
only as they chose to appear, never by address."""

from __future__ import annotations

from typing import Any

from campaigns import signals as campaign_signals
from campaigns.models import Campaign
from core.urls import public_url_for
from integrations.models import WebhookEvent
from integrations.webhooks import queue, subscribed
from ledger import signals as ledger_signals
from payments import signals as payment_signals
from payments.models import Pledge, Visibility


def campaign_data(campaign: Campaign) -> dict[str, Any]:
    return {
        "slug": campaign.slug,
        "title": campaign.title,
        "status": campaign.public_status.value,
        "pledged": campaign.pledged.as_json(),
        "backers": campaign.backer_count,
        "url": public_url_for("campaigns.detail", slug=campaign.slug),
    }


def pledge_data(pledge: Pledge) -> dict[str, Any]:
    chosen = pledge.visibility != Visibility.ANONYMOUS and pledge.public_name
    return {
        "campaign": campaign_data(pledge.campaign),
        "pledge": {
            "reference": pledge.public_id,
            "amount": pledge.money.as_json(),
            "name": pledge.public_name if chosen else None,
            "message": pledge.public_message or None,
            "recurring": pledge.recurring,
        },
    }


def on_pledge_activated(pledge: Pledge, **_: Any) -> None:
    queue(pledge.campaign_id, WebhookEvent.PLEDGE_CREATED, pledge_data(pledge))


def on_pledge_cancelled(pledge: Pledge, **_: Any) -> None:
    queue(pledge.campaign_id, WebhookEvent.PLEDGE_CANCELLED, pledge_data(pledge))


def on_campaign_decided(campaign: Campaign, funded: bool, **_: Any) -> None:
    event = WebhookEvent.CAMPAIGN_FUNDED if funded else WebhookEvent.CAMPAIGN_FAILED
    queue(campaign.id, event, {"campaign": campaign_data(campaign)})


def on_campaign_finished(campaign: Campaign, settled: bool, **_: Any) -> None:
    if settled:
        data = {"campaign": campaign_data(campaign), "collected": campaign.collected.as_json()}
        queue(campaign.id, WebhookEvent.CAMPAIGN_SETTLED, data)


def on_update_posted(campaign: Campaign, update, **_: Any) -> None:
    queue(
        campaign.id,
        WebhookEvent.UPDATE_PUBLISHED,
        {
            "campaign": campaign_data(campaign),
            "update": {"id": update.id, "title": update.title, "body": update.body},
        },
    )


def on_entries_recorded(_sender, entries, **_: Any) -> None:
    """Settlement records thousands of entries at once: one query finds the few
    campaigns that listen, and only their entries are queued."""
    listening = subscribed({e.campaign_id for e in entries if e.campaign_id}, "ledger.entry")
    for entry in entries:
        if entry.campaign_id not in listening:
            continue
        queue(
            entry.campaign_id,
            WebhookEvent.LEDGER_ENTRY,
            {
                "kind": str(entry.kind),
                "reference": entry.reference,
                "counterparty": entry.counterparty,
                "memo": entry.memo,
                "postings": [
                    {"account": account, **money.as_json()} for account, money in entry.postings
                ],
            },
        )


def connect() -> None:
    payment_signals.pledge_activated.connect(on_pledge_activated)
    payment_signals.pledge_cancelled.connect(on_pledge_cancelled)
    campaign_signals.campaign_decided.connect(on_campaign_decided)
    campaign_signals.campaign_finished.connect(on_campaign_finished)
    campaign_signals.update_posted.connect(on_update_posted)
    ledger_signals.entries_recorded.connect(on_entries_recorded)

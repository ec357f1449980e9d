"""Settlement: decide at the deadline, then charge or release every pledge exactly once.

The package is split by phase: `deciding` (the campaign's outcome, and closing it),
`claiming`, `calling` (the provider, its rate limiter and concurrency), `recording`
and `aftercare` (reminders, the end of the retry window, releasing). Pledges move only
through payments.lifecycle.

Exactly once comes from the database, not from the queue:

1. *Claim.* One UPDATE moves a batch of pledges to `charging`, bumps each one's
   attempt number and stores its idempotency key (`pledge-<id>-attempt-<n>`), then
   commits. On PostgreSQL the batch is chosen with `FOR UPDATE SKIP LOCKED`, so
   workers running the same job claim disjoint pledges without waiting on each other;
   on SQLite the UPDATE runs under the database's write lock, which serialises claims
   the way BEGIN IMMEDIATE would, and RETURNING tells who won.
2. *Call* the provider with the stored key (outside any database transaction). The
   provider never charges twice for one key.
3. *Record* the answer with an UPDATE guarded by `status = 'charging' AND charge_key =
   <key>`; only the winner writes the ledger, in the same transaction.

A worker killed between 2 and 3 leaves the pledge in `charging` with its key. After the
lease (CHARGE_LEASE_SECONDS) the pledge is claimed again *with the same key*: the job
first asks the provider for a charge carrying our pledge id, then repeats the call
with the same key, so a charge that did happen is found, never repeated. A charge
whose recording finds the pledge gone elsewhere is followed, never lost
(`recording.follow_lost_charge`).
"""

from payments.settlement.aftercare import (
    drop_expired_authentications,
    release_batch,
    release_suspended_at_deadline,
    released_with_open_pledges,
    send_reminders,
    with_open_pledges,
)
from payments.settlement.calling import (
    RECORD_GROUP,
    RateLimiter,
    SharedRateLimiter,
    call_provider,
    charge_claims,
    charge_on_session,
    kill_once_for_tests,
    limiter,
)
from payments.settlement.claiming import Claim, claim_batch, claim_for_authentication
from payments.settlement.deciding import (
    OPEN_STATUSES,
    decide,
    due_campaign_ids,
    finish_if_done,
    open_campaign_ids,
    progress,
    start_settling,
)
from payments.settlement.periods import (
    advance,
    close_charged_periods,
    end_if_over,
    live_recurring_campaign_ids,
    pause_after_failed_periods,
)
from payments.settlement.recording import (
    follow_lost_charge,
    record_authenticated,
    record_charges,
    record_result,
)

__all__ = [
    "OPEN_STATUSES",
    "RECORD_GROUP",
    "Claim",
    "RateLimiter",
    "SharedRateLimiter",
    "advance",
    "call_provider",
    "charge_claims",
    "charge_on_session",
    "claim_batch",
    "claim_for_authentication",
    "close_charged_periods",
    "decide",
    "drop_expired_authentications",
    "due_campaign_ids",
    "end_if_over",
    "finish_if_done",
    "follow_lost_charge",
    "kill_once_for_tests",
    "limiter",
    "live_recurring_campaign_ids",
    "open_campaign_ids",
    "pause_after_failed_periods",
    "progress",
    "record_authenticated",
    "record_charges",
    "record_result",
    "release_batch",
    "release_suspended_at_deadline",
    "released_with_open_pledges",
    "send_reminders",
    "start_settling",
    "with_open_pledges",
]

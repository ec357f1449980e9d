"""Lifecycle signals, sent inside the transaction that makes the change.

Other packages (payments) subscribe without campaigns knowing them; a subscriber that
starts work does so with `enqueue_after_commit`, so nothing runs for a change that
was rolled back.
"""

from blinker import Namespace

_signals = Namespace()

campaign_launched = _signals.signal("campaign-launched")
campaign_cancelled = _signals.signal("campaign-cancelled")
update_posted = _signals.signal("update-posted")  # (campaign, update=, email_backers=)
# Settlement decided a one-off campaign at its deadline: (campaign, funded=bool).
campaign_decided = _signals.signal("campaign-decided")
# Settlement finished: (campaign, settled=bool): settled, or released when unfunded.
campaign_finished = _signals.signal("campaign-finished")

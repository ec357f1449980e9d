"""Pledge signals, sent inside the transaction that makes the change (packages above
payments subscribe; work they start waits for the commit)."""

from blinker import Namespace

_signals = Namespace()

pledge_activated = _signals.signal("pledge-activated")  # (pledge): its card was saved
pledge_cancelled = _signals.signal("pledge-cancelled")  # (pledge)

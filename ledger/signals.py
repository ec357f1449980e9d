"""Ledger signals, sent inside the transaction that appends the entries."""

from blinker import Namespace

_signals = Namespace()

# (None, entries=[ledger.services.Entry, ...]): appended and in the Merkle log.
entries_recorded = _signals.signal("entries-recorded")

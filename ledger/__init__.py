"""The public ledger: append-only double entry (verification comes with its issue)."""

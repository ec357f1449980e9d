from core.jobs import app_job
from ledger import log


@app_job
def sequence_job() -> int:
    """Append new ledger transactions to the Merkle log and sign a checkpoint."""
    return log.sequence()

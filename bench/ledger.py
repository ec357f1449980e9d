"""A large public ledger: append rate, full verification, proof latency.

    .venv/bin/python bench/ledger.py --entries 1000000

Appends N ledger transactions (two postings each) through the ledger's append API in
batches, sequences them into the Merkle log (tree nodes stored, a checkpoint signed
per batch), then times `ledger verify` (re-encoding and re-hashing every entry from
its rows, checking balances, the root and the signature) beside the time to SHA-256
the same leaf bytes alone (the hashing floor), and the latency of inclusion proofs
at that size. Uses BENCH_DATABASE_URL (default: counterfund_bench on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--proofs", type=int, default=1000)
    args = parser.parse_args()

    from bench.settlement import reset_database

    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counterfund_bench"
    )
    reset_database(url)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "JOB_RUNNER": "eager",
            "COUNTERFUND_INSTANCE": tempfile.mkdtemp(prefix="counterfund-ledger-"),
        }
    )
    subprocess.run(
        [str(ROOT / ".venv/bin/flask"), "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    import logging

    logging.disable(logging.INFO)
    from app import create_app
    from core.extensions import db
    from core.money import Money
    from ledger import log, merkle, verification
    from ledger import services as ledger
    from ledger.models import EntryKind

    app = create_app()
    with app.app_context():
        append_seconds = sequence_seconds = 0.0
        for start in range(0, args.entries, args.batch):
            count = min(args.batch, args.entries - start)
            entries = [
                ledger.Entry(
                    EntryKind.PLEDGE_CHARGE,
                    None,
                    f"bench-{n:08d}",
                    (
                        (ledger.SUPPORTERS, Money(-(100 + n % 5000), "EUR")),
                        ("campaign-less:bench", Money(100 + n % 5000, "EUR")),
                    ),
                    f"supporter-{n % 9973:04x}",
                    "Pledge charged at the deadline",
                )
                for n in range(start, start + count)
            ]
            began = time.perf_counter()
            ledger.record_many(entries)  # appends to the Merkle log in the same transaction
            db.session.commit()
            append_seconds += time.perf_counter() - began
            began = time.perf_counter()
            log.sequence()
            sequence_seconds += time.perf_counter() - began
            if (start // args.batch) % 20 == 0:
                print(f"  {start + count} entries...", flush=True)
        size = log.tree_size()
        assert size == args.entries, size
        # What autovacuum does on its own some time after a bulk load; done now so the
        # planner's statistics describe a 1M-entry ledger, not an empty one.
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")

        began = time.perf_counter()
        ok, report = verification.verify_all()
        verify_seconds = time.perf_counter() - began
        assert ok, report

        leaves = [leaf for _, leaf, _ in log.stream_entries(chunk=5000)]
        began = time.perf_counter()
        for leaf in leaves:
            hashlib.sha256(b"\x00" + leaf).digest()
        floor_seconds = time.perf_counter() - began
        leaf_bytes = sum(len(leaf) for leaf in leaves)
        del leaves

        rng = random.Random(6962)
        latencies = []
        for _ in range(args.proofs):
            index = rng.randrange(size)
            began = time.perf_counter()
            merkle.inclusion_proof(index, size, log.fetch_nodes)
            latencies.append((time.perf_counter() - began) * 1000)
        client = app.test_client()
        http = []
        for _ in range(200):
            index = rng.randrange(size)
            began = time.perf_counter()
            response = client.get(f"/api/v1/ledger/proof/inclusion?index={index}")
            http.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        nodes = db.session.execute(db.text("SELECT count(*) FROM ledger_tree_nodes")).scalar()

    latencies.sort()
    http.sort()
    print(f"entries: {size}; stored tree nodes: {nodes}; leaf bytes: {leaf_bytes / 1e6:.1f} MB")
    print(
        f"append (transactions, postings, balances, leaves, tree nodes; batches of "
        f"{args.batch}): {size / append_seconds:,.0f} entries/s ({append_seconds:.1f} s)"
    )
    print(f"checkpoints signed: {size // args.batch}, {sequence_seconds:.1f} s in all")
    print(
        f"full verification (ledger verify): {verify_seconds:.1f} s; "
        f"hashing floor (SHA-256 of the same leaves): {floor_seconds:.2f} s"
    )
    print(
        f"inclusion proof at size {size}: p50 {statistics.median(latencies):.2f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.2f} ms, max {latencies[-1]:.2f} ms "
        f"({args.proofs} proofs)"
    )
    print(
        f"GET /api/v1/ledger/proof/inclusion (proof + root + leaf, test client): "
        f"p50 {statistics.median(http):.2f} ms, p95 {http[int(len(http) * 0.95)]:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

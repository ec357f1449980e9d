"""The app as served for bench/pledge_surge.py, plus one trivial endpoint to compare with.

`/bench/insert` inserts one row and commits: the floor for "a request that writes to
PostgreSQL" on this machine. CSRF is off so that wrk can POST without a session
(the pledge path is otherwise exactly the production code).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, insert

from app import create_app
from core.extensions import db

app = create_app({"WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False})

bench_rows = Table(
    "bench_rows", MetaData(), Column("id", Integer, primary_key=True), Column("n", BigInteger)
)
with app.app_context():
    bench_rows.create(db.engine, checkfirst=True)


@app.post("/bench/insert")
def bench_insert():
    db.session.execute(insert(bench_rows).values(n=1))
    db.session.commit()
    return "ok"

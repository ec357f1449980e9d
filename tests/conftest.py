"""Test fixtures.

Every test that takes `app` (or `client`) runs twice: on SQLite and on PostgreSQL
(TEST_DATABASE_URL). Without TEST_DATABASE_URL the PostgreSQL run is skipped locally
and *fails* under CI=true, so CI can never go green without exercising PostgreSQL.
The schema comes from the Alembic migrations, not from create_all(), so the migrations
are tested on both backends too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import clock

BACKENDS = ("sqlite", "postgresql")
_prepared: set[str] = set()


def _is_mutant_child() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") not in (None, "", "stats", "clean")


def _mutant_database() -> str:
    return f"mutant_{os.getpid()}"


def _on_server(statement: str) -> None:
    """One statement on the test PostgreSQL server, outside any test database."""
    server = os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0]
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def pytest_configure(config) -> None:
    """Under `make mutants`, mutmut runs each mutant's tests in a forked child, two at
    a time. Each child gets a PostgreSQL database and a temporary root of its own:
    sharing them, children dropped each other's schema and pytest deleted each other's
    numbered temporary folders, so tests failed whatever the mutant and every mutant
    looked killed."""
    if not _is_mutant_child():
        return
    if os.environ.get("TEST_DATABASE_URL"):
        _on_server(f'DROP DATABASE IF EXISTS "{_mutant_database()}" WITH (FORCE)')
        _on_server(f'CREATE DATABASE "{_mutant_database()}"')
        server = os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0]
        os.environ["TEST_DATABASE_URL"] = f"{server}/{_mutant_database()}"
    root = Path(tempfile.gettempdir()) / "counterfund-mutants" / str(os.getpid())
    root.mkdir(parents=True, exist_ok=True)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = str(root)


def pytest_unconfigure(config) -> None:
    if _is_mutant_child() and os.environ.get("TEST_DATABASE_URL"):
        _on_server(f'DROP DATABASE IF EXISTS "{_mutant_database()}" WITH (FORCE)')


def _database_url(backend: str, tmp_root: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_root / 'test.db'}"
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but TEST_DATABASE_URL is not set: PostgreSQL must be tested")
        pytest.skip("TEST_DATABASE_URL not set: PostgreSQL variant not run")
    return url


def _prepare_schema(app, backend: str, url: str) -> None:
    """Drop everything and migrate from scratch, once per backend per session."""
    from flask_migrate import upgrade

    from core.extensions import db

    # Keyed by the session's test database (its SQLite file is in this session's
    # temporary folder): a second pytest run in one process (mutmut runs the tests
    # in-process) has a new file to migrate; an app built on a copy is left alone.
    if url in _prepared:
        return
    with app.app_context():
        if backend == "postgresql":
            try:
                with db.engine.begin() as conn:
                    conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                    conn.execute(sa.text("CREATE SCHEMA public"))
            except sa.exc.OperationalError as exc:
                pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}")
        else:
            db.engine.dispose()
            path = db.engine.url.database
            if path and os.path.exists(path):
                os.remove(path)
        upgrade()
    _prepared.add(url)


def _empty_tables(app) -> None:
    from core.extensions import db

    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # The append-only triggers refuse TRUNCATE; the test superuser may skip them.
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("counterfund")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_app(backend, tmp_root, tmp_path, monkeypatch):
    """Build apps on this test's backend with config overrides; cleans up after."""
    from app import create_app
    from core.extensions import db

    url = _database_url(backend, tmp_root)
    monkeypatch.setenv("COUNTERFUND_INSTANCE", str(tmp_path / "instance"))
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "PUBLIC_TAG_KEY",
        "COUNTERFUND_ENV",
        "PUBLIC_URL",
        "TRUSTED_HOSTS",
        "PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    built = []

    def factory(**overrides):
        config = {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://", 1)
            if url.startswith("postgresql://")
            else url,
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            "OUTBOX_FOLDER": str(tmp_path / "outbox"),
            "OPEN_DATA_FOLDER": str(tmp_path / "open-data"),
            "SIMULATED_PROVIDER_DB": str(tmp_path / "provider.db"),
            "JOB_RUNNER": "eager",
            "LEDGER_SIGNING_KEY_FILE": str(tmp_path / "ledger_key"),
            # Tests act as many people from one address; the per-client limits have
            # tests of their own (test_throttling.py).
            "REGISTER_RATE_LIMIT": "1000 per minute",
            "REPORT_RATE_LIMIT": "1000 per minute",
            "PLEDGE_RATE_LIMIT": "1000 per minute",
            # Tests move the clock by days; session lifetimes have a test of their own.
            "SESSION_IDLE_TIMEOUT": 10 * 365 * 86400,
            "SESSION_ABSOLUTE_TIMEOUT": 10 * 365 * 86400,
        }
        config.update(overrides)
        app = create_app(config)
        _prepare_schema(app, backend, url)
        built.append(app)
        return app

    yield factory
    for app in built:
        runner = app.extensions.get("job_runner")
        if hasattr(runner, "stop"):
            runner.stop()
    clock.freeze(None)
    for app in built:
        _empty_tables(app)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db_session(app):
    from core.extensions import db

    with app.app_context():
        yield db.session


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    """A real localstripe server (a stateful fake of Stripe's API) on a free port, with
    the processing fees Stripe charges and localstripe lacks (tests/localstripe_plus.py;
    0 until a test sets them)."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("localstripe")
    log = open(workdir / "localstripe.log", "wb")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.localstripe_plus", "--port", str(port), "--from-scratch"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(
                    "localstripe did not start: "
                    + (workdir / "localstripe.log").read_text()[-2000:]
                )
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    log.close()


STRIPE_TEST_CONFIG = {
    "PAYMENT_BACKEND": "stripe",
    "STRIPE_SECRET_KEY": "sk_test_counterfund",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_counterfund",
    "STRIPE_WEBHOOK_SECRET": "whsec_counterfund_test",
}


@pytest.fixture
def stripe_app(make_app, localstripe):
    return make_app(
        **STRIPE_TEST_CONFIG,
        STRIPE_API_BASE=localstripe,
        STRIPE_JS_URL=f"{localstripe}/js.stripe.com/v3/",
    )


@pytest.fixture
def redis_url():
    """A real Redis (TEST_REDIS_URL), emptied for the test; required under CI=true."""
    import redis

    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but TEST_REDIS_URL is not set: Redis must be tested")
        pytest.skip("TEST_REDIS_URL not set: RQ tests not run")
    connection = redis.Redis.from_url(url)
    try:
        connection.flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at TEST_REDIS_URL is unreachable: {exc}")
    yield url
    connection.flushdb()
    connection.close()

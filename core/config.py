"""Configuration: defaults in code, overrides from the environment, fail fast when malformed.

Every setting is documented in README.md ("Configuration"). `load_config` never reads
anything but the mapping it is given, so tests pass their own environment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.secrets import secret_from_file

ENVIRONMENTS = ("development", "production", "testing")
PAYMENT_BACKENDS = ("simulated", "stripe")


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the app refuses to start."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _secret(env: Mapping[str, str], name: str, instance_path: str, production: bool) -> str:
    """A key from the environment; outside production, generated at random into the
    instance folder on first run (never a fixed, public default). Production must
    set it explicitly, so every web and worker host shares it."""
    value = env.get(name, "")
    if value:
        if production and len(value) < 32:
            raise ConfigError(f"{name} must be at least 32 characters in production")
        return value
    if production:
        raise ConfigError(f"{name} must be set in production")
    try:
        return secret_from_file(
            Path(instance_path) / name.lower(), lambda: secrets.token_urlsafe(48)
        )
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _public_url(env: Mapping[str, str], instance_path: str, production: bool) -> str:
    """The base of every absolute URL that leaves the app (emails, feeds, the API):
    never the request's Host. Production requires it; `make run` records the port it
    serves on in the instance folder, so CLI commands and jobs link to the same place."""
    url = env.get("PUBLIC_URL", "").strip()
    if not url and production:
        raise ConfigError("PUBLIC_URL must be set in production (e.g. https://counterfund.example)")
    if not url and env.get("PORT"):
        url = f"http://127.0.0.1:{env['PORT']}"
    recorded = Path(instance_path) / "public_url"
    if not url and recorded.is_file():
        url = recorded.read_text().strip()
    url = (url or "http://127.0.0.1:5000").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(f"PUBLIC_URL must be an http(s) URL like https://host, got {url!r}")
    if production and parts.scheme != "https":
        raise ConfigError("PUBLIC_URL must use https in production")
    return url


def _trusted_hosts(env: Mapping[str, str], public_url: str, production: bool) -> list[str]:
    """Hosts the app answers for: the public URL's, those listed, and (outside
    production) this machine's loopback names. Any other Host header gets a 400."""
    hosts = [urlsplit(public_url).hostname or ""]
    hosts += [h.strip() for h in env.get("TRUSTED_HOSTS", "").split(",") if h.strip()]
    if not production:
        hosts += ["127.0.0.1", "localhost", "[::1]"]
    return list(dict.fromkeys(hosts))


def normalise_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# ---- The settings, as a table ----------------------------------------------------------
#
# Each row is (config key, reader). A reader gets the environment and the settings read
# so far (rows are read in order, so later rows may depend on earlier ones; "INSTANCE"
# holds the instance folder) and returns the value or raises ConfigError. Production
# rules live in the readers (_secret, _public_url) and in CHECKS below.

Env = Mapping[str, str]
Reader = Callable[[Env, dict[str, Any]], Any]


def integer(name: str, default: int, minimum: int = 0) -> Reader:
    return lambda env, _c: _int(env, name, default, minimum)


def text(name: str, default: str = "") -> Reader:
    """The variable as given (set but empty stays empty)."""
    return lambda env, _c: env.get(name, default)


def flag(name: str, default: bool) -> Reader:
    return lambda env, _c: _bool(env, name, default)


def in_instance(name: str, filename: str) -> Reader:
    """A path: the variable, or a file in the instance folder when unset or empty."""
    return lambda env, c: env.get(name) or str(Path(c["INSTANCE"]) / filename)


def fixed(value: Any) -> Reader:
    return lambda _env, _c: value


def one_of(name: str, choices: tuple[str, ...], default: str) -> Reader:
    def read(env: Env, _c: dict[str, Any]) -> str:
        value = env.get(name, default)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}")
        return value

    return read


def _database_url(env: Env, c: dict[str, Any]) -> str:
    url = env.get("DATABASE_URL") or "sqlite:///" + str(Path(c["INSTANCE"]) / "counterfund.db")
    if "://" not in url:
        raise ConfigError(f"DATABASE_URL is not a URL: {url!r}")
    return normalise_database_url(url)


def _redis_url(env: Env, _c: dict[str, Any]) -> str | None:
    url = env.get("REDIS_URL") or None
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return url


def _job_runner(env: Env, c: dict[str, Any]) -> str:
    runner = env.get("JOB_RUNNER") or ("rq" if c["REDIS_URL"] else "thread")
    if runner not in ("rq", "thread", "eager"):
        raise ConfigError("JOB_RUNNER must be rq, thread or eager")
    if runner == "rq" and not c["REDIS_URL"]:
        raise ConfigError("JOB_RUNNER=rq needs REDIS_URL")
    return runner


def _secret_setting(name: str) -> Reader:
    return lambda env, c: _secret(env, name, c["INSTANCE"], c["PRODUCTION"])


STRIPE_KEYS = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")

SETTINGS: tuple[tuple[str, Reader], ...] = (
    ("ENV_NAME", one_of("COUNTERFUND_ENV", ENVIRONMENTS, "development")),
    ("PRODUCTION", lambda _env, c: c["ENV_NAME"] == "production"),
    ("SECRET_KEY", _secret_setting("SECRET_KEY")),
    # Keys the public tags of anonymous supporters and ledger references; never the
    # session key, so a leaked session key cannot unmask supporters.
    ("PUBLIC_TAG_KEY", _secret_setting("PUBLIC_TAG_KEY")),
    # Base of every absolute link: emails, feeds, API urls, the ledger's origin.
    ("PUBLIC_URL", lambda env, c: _public_url(env, c["INSTANCE"], c["PRODUCTION"])),
    ("SQLALCHEMY_DATABASE_URI", _database_url),
    ("SQLALCHEMY_ENGINE_OPTIONS", fixed({"pool_pre_ping": True})),
    ("REDIS_URL", _redis_url),
    ("PAYMENT_BACKEND", one_of("PAYMENT_BACKEND", PAYMENT_BACKENDS, "simulated")),
    ("CAMPAIGN_MIN_DURATION", integer("CAMPAIGN_MIN_DURATION", 24 * 3600, minimum=60)),
    ("CAMPAIGN_MAX_DURATION", integer("CAMPAIGN_MAX_DURATION", 90 * 24 * 3600, minimum=60)),
    # Whole units of the campaign's currency; converted with the currency's exponent.
    ("CAMPAIGN_MAX_GOAL", integer("CAMPAIGN_MAX_GOAL", 10_000_000, minimum=1)),
    ("COVER_IMAGE_MAX_BYTES", integer("COVER_IMAGE_MAX_BYTES", 2 * 1024 * 1024, minimum=1)),
    ("COVER_IMAGE_MAX_PIXELS", integer("COVER_IMAGE_MAX_PIXELS", 25_000_000, minimum=1)),
    # Whole request bodies: a cover image plus the form around it.
    ("MAX_CONTENT_LENGTH", integer("MAX_REQUEST_BYTES", 8 * 1024 * 1024, minimum=1024)),
    ("UPLOAD_FOLDER", in_instance("UPLOAD_FOLDER", "uploads")),
    # The open data dump (rebuilt daily by the sweep).
    ("OPEN_DATA_FOLDER", in_instance("OPEN_DATA_FOLDER", "open-data")),
    ("LOGIN_RATE_LIMIT_IP", text("LOGIN_RATE_LIMIT_IP", "30 per minute;300 per day")),
    # Failures per account and client pair; the owner's own client is not counted
    # with an attacker's. The ceiling counts the account across all clients.
    ("LOGIN_RATE_LIMIT_ACCOUNT", text("LOGIN_RATE_LIMIT_ACCOUNT", "5 per minute;30 per day")),
    (
        "LOGIN_RATE_LIMIT_ACCOUNT_CEILING",
        text("LOGIN_RATE_LIMIT_ACCOUNT_CEILING", "30 per minute;200 per day"),
    ),
    # Per client (IP): registrations, reports and pledge form submissions.
    ("REGISTER_RATE_LIMIT", text("REGISTER_RATE_LIMIT", "5 per hour;20 per day")),
    ("REPORT_RATE_LIMIT", text("REPORT_RATE_LIMIT", "5 per hour")),
    ("PLEDGE_RATE_LIMIT", text("PLEDGE_RATE_LIMIT", "10 per minute;40 per hour")),
    # Per client (IP), one budget for the whole API: generous for auditors' tools, a ceiling for
    # scrapers; announced in X-RateLimit-* headers.
    ("API_RATE_LIMIT", text("API_RATE_LIMIT", "300 per minute")),
    # Webhooks to private, loopback or link-local addresses: only in development.
    (
        "WEBHOOK_ALLOW_PRIVATE_TARGETS",
        lambda env, c: flag("WEBHOOK_ALLOW_PRIVATE_TARGETS", c["ENV_NAME"] == "development")(
            env, c
        ),
    ),
    ("RATELIMIT_STORAGE_URI", lambda _env, c: c["REDIS_URL"] or "memory://"),
    ("RATELIMIT_ENABLED", flag("RATELIMIT_ENABLED", True)),
    ("RATELIMIT_HEADERS_ENABLED", fixed(True)),
    # Redis unreachable: every limit goes on, counted in each process's memory, until
    # Flask-Limiter finds the storage back (rate-limited routes answered 500 before).
    ("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", fixed(True)),
    ("PROXY_FIX_X_FOR", integer("PROXY_FIX_X_FOR", 0)),
    ("SESSION_COOKIE_SECURE", lambda _env, c: c["PRODUCTION"]),
    ("SESSION_COOKIE_HTTPONLY", fixed(True)),
    ("SESSION_COOKIE_SAMESITE", fixed("Lax")),
    ("REMEMBER_COOKIE_SECURE", lambda _env, c: c["PRODUCTION"]),
    ("REMEMBER_COOKIE_HTTPONLY", fixed(True)),
    ("REMEMBER_COOKIE_SAMESITE", fixed("Lax")),
    ("PREFERRED_URL_SCHEME", lambda _env, c: "https" if c["PRODUCTION"] else "http"),
    ("SERVER_NAME", lambda env, _c: env.get("SERVER_NAME") or None),
    (
        "TRUSTED_HOSTS",
        lambda env, c: _trusted_hosts(env, c["PUBLIC_URL"], c["PRODUCTION"]),
    ),
    ("WTF_CSRF_TIME_LIMIT", fixed(None)),
    ("BABEL_DEFAULT_LOCALE", fixed("en")),
    ("BABEL_DEFAULT_TIMEZONE", fixed("UTC")),
    ("PAGE_SIZE", integer("PAGE_SIZE", 12, minimum=1)),
    # Public pages kept for anonymous visitors until a write changes them (core/page_cache.py);
    # at most this many seconds old in any case (times shown, "3 days left").
    ("PAGE_CACHE", flag("PAGE_CACHE", True)),
    ("PAGE_CACHE_SECONDS", integer("PAGE_CACHE_SECONDS", 60, minimum=1)),
    # A login ends after this long without a request, and after this long at all.
    ("SESSION_IDLE_TIMEOUT", integer("SESSION_IDLE_TIMEOUT", 2 * 3600, minimum=60)),
    ("SESSION_ABSOLUTE_TIMEOUT", integer("SESSION_ABSOLUTE_TIMEOUT", 7 * 24 * 3600, minimum=60)),
    # Pledges
    ("PLEDGE_MAX_AMOUNT", integer("PLEDGE_MAX_AMOUNT", 100_000, minimum=1)),
    ("PLEDGE_LINK_MAX_AGE", integer("PLEDGE_LINK_MAX_AGE", 180 * 24 * 3600, minimum=60)),
    ("PLEDGE_FREEZE_WINDOW", integer("PLEDGE_FREEZE_WINDOW", 24 * 3600, minimum=0)),
    ("SIMULATED_PROVIDER_DB", in_instance("SIMULATED_PROVIDER_DB", "simulated_provider.db")),
    ("STRIPE_API_BASE", text("STRIPE_API_BASE")),
    ("STRIPE_JS_URL", text("STRIPE_JS_URL", "https://js.stripe.com/v3/")),
    *((key, text(key)) for key in STRIPE_KEYS),
    # Jobs and settlement
    ("JOB_RUNNER", _job_runner),
    ("JOB_QUEUE", text("JOB_QUEUE", "settlement")),
    ("SWEEP_INTERVAL", integer("SWEEP_INTERVAL", 60, minimum=1)),
    # How often RQ workers run RQ's maintenance, which restarts a dead scheduler and
    # takes over a dead worker's scheduler lock (RQ's own default: 600).
    ("WORKER_MAINTENANCE_INTERVAL", integer("WORKER_MAINTENANCE_INTERVAL", 30, minimum=1)),
    ("SETTLEMENT_BATCH_SIZE", integer("SETTLEMENT_BATCH_SIZE", 500, minimum=1)),
    ("SETTLEMENT_FAN_OUT", integer("SETTLEMENT_FAN_OUT", 4, minimum=1)),
    ("SETTLEMENT_CONCURRENCY", integer("SETTLEMENT_CONCURRENCY", 32, minimum=1)),
    ("SETTLEMENT_RECORDERS", integer("SETTLEMENT_RECORDERS", 4, minimum=1)),
    ("SETTLEMENT_RATE_LIMIT", integer("SETTLEMENT_RATE_LIMIT", 95, minimum=1)),
    ("CHARGE_LEASE_SECONDS", integer("CHARGE_LEASE_SECONDS", 300, minimum=0)),
    ("RETRY_WINDOW", integer("RETRY_WINDOW", 7 * 24 * 3600, minimum=0)),
    ("REMINDER_INTERVAL", integer("REMINDER_INTERVAL", 48 * 3600, minimum=60)),
    ("PERIOD_DECISION_GRACE", integer("PERIOD_DECISION_GRACE", 24 * 3600, minimum=60)),
    (
        "RECURRING_MAX_FAILED_PERIODS",
        integer("RECURRING_MAX_FAILED_PERIODS", 3, minimum=1),
    ),
    ("PERIOD_NOTICE_BEFORE", integer("PERIOD_NOTICE_BEFORE", 2 * 24 * 3600, minimum=3600)),
    (
        "DEADLINE_REMINDER_BEFORE",
        integer("DEADLINE_REMINDER_BEFORE", 3 * 24 * 3600, minimum=3600),
    ),
    ("PENDING_PLEDGE_TTL", integer("PENDING_PLEDGE_TTL", 24 * 3600, minimum=60)),
    ("SIMULATED_LATENCY", lambda env, _c: _int(env, "SIMULATED_LATENCY_MS", 0) / 1000),
    ("SIMULATED_RATE_LIMIT", integer("SIMULATED_RATE_LIMIT", 0)),
    # Ledger
    ("LEDGER_SIGNING_KEY", text("LEDGER_SIGNING_KEY")),
    ("LEDGER_SIGNING_KEY_FILE", in_instance("LEDGER_SIGNING_KEY_FILE", "ledger_signing_key")),
    (
        "LEDGER_ORIGIN",
        lambda env, c: (
            env.get("LEDGER_ORIGIN")
            or (urlsplit(c["PUBLIC_URL"]).hostname or "counterfund") + "/ledger"
        ),
    ),
    ("RECONCILE_INTERVAL", integer("RECONCILE_INTERVAL", 24 * 3600, minimum=60)),
    ("RECEIPT_MAX_BYTES", integer("RECEIPT_MAX_BYTES", 5 * 1024 * 1024, minimum=1)),
    # Email
    ("MAIL_FROM", text("MAIL_FROM", "Counterfund <no-reply@counterfund.invalid>")),
    # Where alerts about money that needs a person go (optional).
    ("OPERATOR_EMAIL", text("OPERATOR_EMAIL")),
    ("OUTBOX_FOLDER", in_instance("OUTBOX_FOLDER", "outbox")),
    ("OUTBOX_MAX_ATTEMPTS", integer("OUTBOX_MAX_ATTEMPTS", 8, minimum=1)),
    ("OUTBOX_RETRY_SECONDS", integer("OUTBOX_RETRY_SECONDS", 60, minimum=1)),
    ("SMTP_HOST", text("SMTP_HOST")),
    ("SMTP_PORT", integer("SMTP_PORT", 587, minimum=1)),
    ("SMTP_USERNAME", text("SMTP_USERNAME")),
    ("SMTP_PASSWORD", text("SMTP_PASSWORD")),
    ("SMTP_STARTTLS", flag("SMTP_STARTTLS", True)),
    ("SMTP_SSL", flag("SMTP_SSL", False)),
)


# ---- Rules across settings -------------------------------------------------------------


def _keys_differ(c: dict[str, Any]) -> None:
    if c["PUBLIC_TAG_KEY"] == c["SECRET_KEY"]:
        raise ConfigError("PUBLIC_TAG_KEY must differ from SECRET_KEY")


def _durations_ordered(c: dict[str, Any]) -> None:
    if c["CAMPAIGN_MAX_DURATION"] < c["CAMPAIGN_MIN_DURATION"]:
        raise ConfigError("CAMPAIGN_MAX_DURATION must not be below CAMPAIGN_MIN_DURATION")


def _stripe_complete(c: dict[str, Any]) -> None:
    if c["PAYMENT_BACKEND"] != "stripe":
        return
    missing = [name for name in STRIPE_KEYS if not c[name]]
    if missing:
        raise ConfigError(f"PAYMENT_BACKEND=stripe needs {', '.join(missing)}")
    if not c["STRIPE_SECRET_KEY"].startswith(("sk_test_", "sk_live_", "rk_")):
        raise ConfigError("STRIPE_SECRET_KEY does not look like a Stripe secret key")


# Each rule, with the last setting it needs: it runs as soon as that setting is read,
# so when several settings are wrong the first one in the table is reported.
CHECKS: tuple[tuple[str, Callable[[dict[str, Any]], None]], ...] = (
    ("PUBLIC_TAG_KEY", _keys_differ),
    ("CAMPAIGN_MAX_DURATION", _durations_ordered),
    (STRIPE_KEYS[-1], _stripe_complete),
)


def load_config(env: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    """Read every setting of the table, applying each rule across settings once the
    settings it needs are read."""
    config: dict[str, Any] = {"INSTANCE": instance_path}
    for key, read in SETTINGS:
        config[key] = read(env, config)
        for after, check in CHECKS:
            if after == key:
                check(config)
    del config["INSTANCE"]
    return config


def config_from_environment(instance_path: str) -> dict[str, Any]:
    return load_config(os.environ, instance_path)

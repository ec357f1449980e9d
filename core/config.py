"""Configuration: defaults in code, overrides from the environment, fail fast when malformed.

Every setting is documented in README.md ("Configuration"). `load_config` never reads
anything but the mapping it is given, so tests pass their own environment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
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


def load_config(env: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    environment = env.get("COUNTERFUND_ENV", "development")
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"COUNTERFUND_ENV must be one of {', '.join(ENVIRONMENTS)}")
    production = environment == "production"

    secret_key = _secret(env, "SECRET_KEY", instance_path, production)
    public_tag_key = _secret(env, "PUBLIC_TAG_KEY", instance_path, production)
    if public_tag_key == secret_key:
        raise ConfigError("PUBLIC_TAG_KEY must differ from SECRET_KEY")
    public_url = _public_url(env, instance_path, production)

    database_url = env.get("DATABASE_URL") or (
        "sqlite:///" + str(Path(instance_path) / "counterfund.db")
    )
    if "://" not in database_url:
        raise ConfigError(f"DATABASE_URL is not a URL: {database_url!r}")

    redis_url = env.get("REDIS_URL") or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")

    payment_backend = env.get("PAYMENT_BACKEND", "simulated")
    if payment_backend not in PAYMENT_BACKENDS:
        raise ConfigError(f"PAYMENT_BACKEND must be one of {', '.join(PAYMENT_BACKENDS)}")

    min_duration = _int(env, "CAMPAIGN_MIN_DURATION", 24 * 3600, minimum=60)
    max_duration = _int(env, "CAMPAIGN_MAX_DURATION", 90 * 24 * 3600, minimum=60)
    if max_duration < min_duration:
        raise ConfigError("CAMPAIGN_MAX_DURATION must not be below CAMPAIGN_MIN_DURATION")

    stripe_keys = {
        name: env.get(name, "")
        for name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
    }
    if payment_backend == "stripe":
        missing = [name for name, value in stripe_keys.items() if not value]
        if missing:
            raise ConfigError(f"PAYMENT_BACKEND=stripe needs {', '.join(missing)}")
        if not stripe_keys["STRIPE_SECRET_KEY"].startswith(("sk_test_", "sk_live_", "rk_")):
            raise ConfigError("STRIPE_SECRET_KEY does not look like a Stripe secret key")
    smtp_host = env.get("SMTP_HOST", "")
    job_runner = env.get("JOB_RUNNER") or ("rq" if redis_url else "thread")
    if job_runner not in ("rq", "thread", "eager"):
        raise ConfigError("JOB_RUNNER must be rq, thread or eager")
    if job_runner == "rq" and not redis_url:
        raise ConfigError("JOB_RUNNER=rq needs REDIS_URL")

    return {
        "ENV_NAME": environment,
        "PRODUCTION": production,
        "SECRET_KEY": secret_key,
        # Keys the public tags of anonymous supporters and ledger references; never the
        # session key, so a leaked session key cannot unmask supporters.
        "PUBLIC_TAG_KEY": public_tag_key,
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
        "PAYMENT_BACKEND": payment_backend,
        "CAMPAIGN_MIN_DURATION": min_duration,
        "CAMPAIGN_MAX_DURATION": max_duration,
        # Whole units of the campaign's currency; converted with the currency's exponent.
        "CAMPAIGN_MAX_GOAL": _int(env, "CAMPAIGN_MAX_GOAL", 10_000_000, minimum=1),
        "COVER_IMAGE_MAX_BYTES": _int(env, "COVER_IMAGE_MAX_BYTES", 2 * 1024 * 1024, minimum=1),
        "COVER_IMAGE_MAX_PIXELS": _int(env, "COVER_IMAGE_MAX_PIXELS", 25_000_000, minimum=1),
        # Whole request bodies: a cover image plus the form around it.
        "MAX_CONTENT_LENGTH": _int(env, "MAX_REQUEST_BYTES", 8 * 1024 * 1024, minimum=1024),
        "UPLOAD_FOLDER": env.get("UPLOAD_FOLDER") or str(Path(instance_path) / "uploads"),
        "LOGIN_RATE_LIMIT_IP": env.get("LOGIN_RATE_LIMIT_IP", "30 per minute;300 per day"),
        # Failures per account and client pair; the owner's own client is not counted
        # with an attacker's. The ceiling counts the account across all clients.
        "LOGIN_RATE_LIMIT_ACCOUNT": env.get("LOGIN_RATE_LIMIT_ACCOUNT", "5 per minute;30 per day"),
        "LOGIN_RATE_LIMIT_ACCOUNT_CEILING": env.get(
            "LOGIN_RATE_LIMIT_ACCOUNT_CEILING", "30 per minute;200 per day"
        ),
        # Per client (IP): registrations, reports and pledge form submissions.
        "REGISTER_RATE_LIMIT": env.get("REGISTER_RATE_LIMIT", "5 per hour;20 per day"),
        "REPORT_RATE_LIMIT": env.get("REPORT_RATE_LIMIT", "5 per hour"),
        "PLEDGE_RATE_LIMIT": env.get("PLEDGE_RATE_LIMIT", "10 per minute;40 per hour"),
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "RATELIMIT_HEADERS_ENABLED": True,
        "PROXY_FIX_X_FOR": _int(env, "PROXY_FIX_X_FOR", 0),
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "SERVER_NAME": env.get("SERVER_NAME") or None,
        "TRUSTED_HOSTS": _trusted_hosts(env, public_url, production),
        "WTF_CSRF_TIME_LIMIT": None,
        "BABEL_DEFAULT_LOCALE": "en",
        "BABEL_DEFAULT_TIMEZONE": "UTC",
        "PAGE_SIZE": _int(env, "PAGE_SIZE", 12, minimum=1),
        # A login ends after this long without a request, and after this long at all.
        "SESSION_IDLE_TIMEOUT": _int(env, "SESSION_IDLE_TIMEOUT", 2 * 3600, minimum=60),
        "SESSION_ABSOLUTE_TIMEOUT": _int(
            env, "SESSION_ABSOLUTE_TIMEOUT", 7 * 24 * 3600, minimum=60
        ),
        # Base of every absolute link: emails, feeds, API urls, the ledger's origin.
        "PUBLIC_URL": public_url,
        # Pledges
        "PLEDGE_MAX_AMOUNT": _int(env, "PLEDGE_MAX_AMOUNT", 100_000, minimum=1),
        "PLEDGE_LINK_MAX_AGE": _int(env, "PLEDGE_LINK_MAX_AGE", 180 * 24 * 3600, minimum=60),
        "PLEDGE_FREEZE_WINDOW": _int(env, "PLEDGE_FREEZE_WINDOW", 24 * 3600, minimum=0),
        "SIMULATED_PROVIDER_DB": env.get("SIMULATED_PROVIDER_DB")
        or str(Path(instance_path) / "simulated_provider.db"),
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE", ""),
        "STRIPE_JS_URL": env.get("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
        **stripe_keys,
        # Jobs and settlement
        "JOB_RUNNER": job_runner,
        "JOB_QUEUE": env.get("JOB_QUEUE", "settlement"),
        "SWEEP_INTERVAL": _int(env, "SWEEP_INTERVAL", 60, minimum=1),
        # How often RQ workers run RQ's maintenance, which restarts a dead scheduler and
        # takes over a dead worker's scheduler lock (RQ's own default: 600).
        "WORKER_MAINTENANCE_INTERVAL": _int(env, "WORKER_MAINTENANCE_INTERVAL", 30, minimum=1),
        "SETTLEMENT_BATCH_SIZE": _int(env, "SETTLEMENT_BATCH_SIZE", 500, minimum=1),
        "SETTLEMENT_FAN_OUT": _int(env, "SETTLEMENT_FAN_OUT", 4, minimum=1),
        "SETTLEMENT_CONCURRENCY": _int(env, "SETTLEMENT_CONCURRENCY", 32, minimum=1),
        "SETTLEMENT_RECORDERS": _int(env, "SETTLEMENT_RECORDERS", 4, minimum=1),
        "SETTLEMENT_RATE_LIMIT": _int(env, "SETTLEMENT_RATE_LIMIT", 95, minimum=1),
        "CHARGE_LEASE_SECONDS": _int(env, "CHARGE_LEASE_SECONDS", 300, minimum=0),
        "RETRY_WINDOW": _int(env, "RETRY_WINDOW", 7 * 24 * 3600, minimum=0),
        "REMINDER_INTERVAL": _int(env, "REMINDER_INTERVAL", 48 * 3600, minimum=60),
        "PENDING_PLEDGE_TTL": _int(env, "PENDING_PLEDGE_TTL", 24 * 3600, minimum=60),
        "SIMULATED_LATENCY": _int(env, "SIMULATED_LATENCY_MS", 0) / 1000,
        "SIMULATED_RATE_LIMIT": _int(env, "SIMULATED_RATE_LIMIT", 0),
        # Ledger
        "LEDGER_SIGNING_KEY": env.get("LEDGER_SIGNING_KEY", ""),
        "LEDGER_SIGNING_KEY_FILE": env.get("LEDGER_SIGNING_KEY_FILE")
        or str(Path(instance_path) / "ledger_signing_key"),
        "LEDGER_ORIGIN": env.get("LEDGER_ORIGIN")
        or (urlsplit(public_url).hostname or "counterfund") + "/ledger",
        "RECONCILE_INTERVAL": _int(env, "RECONCILE_INTERVAL", 24 * 3600, minimum=60),
        "RECEIPT_MAX_BYTES": _int(env, "RECEIPT_MAX_BYTES", 5 * 1024 * 1024, minimum=1),
        # Email
        "MAIL_FROM": env.get("MAIL_FROM", "Counterfund <no-reply@counterfund.invalid>"),
        # Where alerts about money that needs a person go (optional).
        "OPERATOR_EMAIL": env.get("OPERATOR_EMAIL", ""),
        "OUTBOX_FOLDER": env.get("OUTBOX_FOLDER") or str(Path(instance_path) / "outbox"),
        "OUTBOX_MAX_ATTEMPTS": _int(env, "OUTBOX_MAX_ATTEMPTS", 8, minimum=1),
        "OUTBOX_RETRY_SECONDS": _int(env, "OUTBOX_RETRY_SECONDS", 60, minimum=1),
        "SMTP_HOST": smtp_host,
        "SMTP_PORT": _int(env, "SMTP_PORT", 587, minimum=1),
        "SMTP_USERNAME": env.get("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _bool(env, "SMTP_STARTTLS", True),
        "SMTP_SSL": _bool(env, "SMTP_SSL", False),
    }


def config_from_environment(instance_path: str) -> dict[str, Any]:
    return load_config(os.environ, instance_path)

import pytest

from core.config import ConfigError, load_config


def test_defaults_work_for_development(tmp_path):
    config = load_config({}, str(tmp_path))
    # A random key generated into the instance folder (tests/test_public_url.py).
    assert config["SECRET_KEY"] == (tmp_path / "secret_key").read_text().strip()
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/counterfund.db"
    assert config["PAYMENT_BACKEND"] == "simulated"
    assert config["REDIS_URL"] is None
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert (config["CAMPAIGN_MIN_DURATION"], config["CAMPAIGN_MAX_DURATION"]) == (86400, 7776000)
    assert config["SESSION_COOKIE_HTTPONLY"] and config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({"COUNTERFUND_ENV": "production"}, str(tmp_path))
    with pytest.raises(ConfigError, match="32 characters"):
        load_config({"COUNTERFUND_ENV": "production", "SECRET_KEY": "short"}, str(tmp_path))
    config = load_config(
        {
            "COUNTERFUND_ENV": "production",
            "SECRET_KEY": "k" * 40,
            "PUBLIC_TAG_KEY": "t" * 40,
            "PUBLIC_URL": "https://counterfund.example",
        },
        str(tmp_path),
    )
    assert config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COUNTERFUND_ENV": "staging"}, "COUNTERFUND_ENV"),
        ({"PAYMENT_BACKEND": "paypal"}, "PAYMENT_BACKEND"),
        ({"CAMPAIGN_MIN_DURATION": "a day"}, "whole number"),
        ({"CAMPAIGN_MIN_DURATION": "7200", "CAMPAIGN_MAX_DURATION": "3600"}, "must not be below"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DATABASE_URL": "counterfund.db"}, "DATABASE_URL"),
        ({"RATELIMIT_ENABLED": "maybe"}, "true or false"),
    ],
)
def test_malformed_settings_fail_fast(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env, str(tmp_path))


def test_postgres_urls_use_psycopg3(tmp_path):
    for url in ("postgres://u@h/db", "postgresql://u@h/db"):
        config = load_config({"DATABASE_URL": url}, str(tmp_path))
        assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_create_app_fails_fast_in_production(monkeypatch, tmp_path):
    from app import create_app

    monkeypatch.setenv("COUNTERFUND_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("COUNTERFUND_INSTANCE", str(tmp_path))
    with pytest.raises(ConfigError):
        create_app()


def test_every_rule_across_settings_runs():
    """A rule runs after the setting it names: a name outside the table would never run."""
    from core.config import CHECKS, SETTINGS

    names = [key for key, _read in SETTINGS]
    assert all(after in names for after, _check in CHECKS)

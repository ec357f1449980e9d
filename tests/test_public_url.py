"""Every absolute URL that leaves the app comes from PUBLIC_URL, never from the
request's Host; requests for other hosts are refused; secrets are never public."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, load_config
from tests.factories import live_campaign, pledge, submit
from tests.test_pledges import _outbox

PUBLIC = "https://counterfund.example"


@pytest.fixture
def public_app(make_app, monkeypatch):
    monkeypatch.setenv("PUBLIC_URL", PUBLIC)
    return make_app()


def test_a_forged_host_gets_a_400_and_no_email(public_app):
    client = public_app.test_client()
    slug = live_campaign(public_app)
    pledge(client, slug, email="victim@example.org")
    sent = len(_outbox(public_app))
    page = client.get("/pledges/links")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/pledges/links",
        data={"csrf_token": token, "email": "victim@example.org"},
        headers={"Host": "attacker.example"},
    )
    assert response.status_code == 400
    assert len(_outbox(public_app)) == sent


def test_links_in_emails_use_the_public_url_whatever_the_host(public_app):
    client = public_app.test_client()
    slug = live_campaign(public_app)
    pledge(client, slug, email="victim@example.org")
    response = submit(client, "/pledges/links", {"email": "victim@example.org"})
    assert response.status_code == 302
    for message in _outbox(public_app):
        links = re.findall(r"https?://\S+", message)
        assert links and all(link.startswith(PUBLIC + "/") for link in links), message


def test_feeds_and_api_urls_use_the_public_url(public_app):
    slug = live_campaign(public_app)
    client = public_app.test_client()
    api = client.get(f"/api/v1/campaigns/{slug}").get_json()
    assert api["url"] == f"{PUBLIC}/c/{slug}"
    listing = client.get("/api/v1/campaigns?per_page=1").get_json()
    for value in re.findall(r"https?://[^\"' ]+", str(listing)):
        assert value.startswith(PUBLIC + "/")
    feed = client.get(f"/c/{slug}/updates.atom").text
    assert f"{PUBLIC}/c/{slug}" in feed
    assert "localhost" not in feed
    ledger_feed = client.get("/ledger/feed.atom").text
    assert "localhost" not in ledger_feed


def test_production_needs_a_public_https_url(tmp_path):
    keys = {"COUNTERFUND_ENV": "production", "SECRET_KEY": "s" * 40, "PUBLIC_TAG_KEY": "t" * 40}
    with pytest.raises(ConfigError, match="PUBLIC_URL must be set"):
        load_config(keys, str(tmp_path))
    with pytest.raises(ConfigError, match="https"):
        load_config({**keys, "PUBLIC_URL": "http://counterfund.example"}, str(tmp_path))
    config = load_config({**keys, "PUBLIC_URL": "https://counterfund.example/"}, str(tmp_path))
    assert config["PUBLIC_URL"] == "https://counterfund.example"
    assert config["TRUSTED_HOSTS"] == ["counterfund.example"]
    assert config["LEDGER_ORIGIN"] == "counterfund.example/ledger"
    extra = load_config({**keys, "PUBLIC_URL": PUBLIC, "TRUSTED_HOSTS": "lb.internal"}, ".")
    assert extra["TRUSTED_HOSTS"] == ["counterfund.example", "lb.internal"]


@pytest.mark.parametrize(
    "url", ["counterfund.example", "ftp://x.example", "https://", "https://x?a=1"]
)
def test_malformed_public_urls_fail_fast(tmp_path, url):
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        load_config({"PUBLIC_URL": url}, str(tmp_path))


def test_cli_and_jobs_link_to_the_port_make_run_serves_on(tmp_path):
    """`PORT=5302 make run` records its URL; a later `flask settle --due` (no PORT in its
    environment) builds its links on it, not on port 5000."""
    (tmp_path / "public_url").write_text("http://127.0.0.1:5302\n")
    assert load_config({}, str(tmp_path))["PUBLIC_URL"] == "http://127.0.0.1:5302"
    assert load_config({"PORT": "5400"}, str(tmp_path))["PUBLIC_URL"] == "http://127.0.0.1:5400"
    assert load_config({"PUBLIC_URL": PUBLIC}, str(tmp_path))["PUBLIC_URL"] == PUBLIC


def test_the_makefile_records_the_url_it_serves_on():
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    assert "public_url" in makefile


# ---- Secrets ------------------------------------------------------------------------


def test_without_a_secret_key_a_random_one_is_generated_and_kept(tmp_path):
    first = load_config({}, str(tmp_path))
    again = load_config({}, str(tmp_path))
    other = load_config({}, str(tmp_path / "elsewhere"))
    assert len(first["SECRET_KEY"]) >= 48
    assert first["SECRET_KEY"] == again["SECRET_KEY"]
    assert first["SECRET_KEY"] != other["SECRET_KEY"]
    assert "counterfund-dev-secret" not in first["SECRET_KEY"]
    # Anonymous supporters' tags use a key of their own, never the session key.
    assert first["PUBLIC_TAG_KEY"] != first["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_requires_both_keys_explicitly(tmp_path):
    base = {"COUNTERFUND_ENV": "production", "PUBLIC_URL": PUBLIC}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({**base, "PUBLIC_TAG_KEY": "t" * 40}, str(tmp_path))
    with pytest.raises(ConfigError, match="PUBLIC_TAG_KEY"):
        load_config({**base, "SECRET_KEY": "s" * 40}, str(tmp_path))
    with pytest.raises(ConfigError, match="differ"):
        load_config({**base, "SECRET_KEY": "s" * 40, "PUBLIC_TAG_KEY": "s" * 40}, str(tmp_path))
    assert not (tmp_path / "secret_key").exists()


def test_an_empty_secret_file_refuses_to_start(tmp_path):
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config({}, str(tmp_path))


def test_a_session_cookie_signed_with_the_old_public_key_is_refused(app, client):
    import hashlib

    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer(
        "counterfund-dev-secret-key-not-for-production",
        salt="cookie-session",
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    ).dumps({"_user_id": "1:0", "_fresh": True})
    client.set_cookie("session", forged)
    assert client.get("/account").status_code == 302  # to login: not accepted


# ---- The ledger's signing key -------------------------------------------------------


def test_the_signing_key_file_is_written_atomically_and_checked(make_app, tmp_path):
    from ledger import signing

    key_file = tmp_path / "fresh_key"
    app = make_app(LEDGER_SIGNING_KEY_FILE=str(key_file))
    with app.app_context():
        first = signing.verifier_key()
    assert len(key_file.read_text().strip()) == 44
    assert not [p for p in key_file.parent.iterdir() if p.name.startswith(".fresh_key.")]
    for junk in ("", "not base64!", "c2hvcnQ="):
        bad = tmp_path / f"bad{len(junk)}"
        bad.write_text(junk)
        with pytest.raises(ConfigError, match="signing key"):
            make_app(LEDGER_SIGNING_KEY_FILE=str(bad))
    with app.app_context():
        assert signing.verifier_key() == first


def test_concurrent_first_runs_agree_on_one_signing_key(tmp_path):
    """Eight processes start at once on an empty instance folder: every one of them
    reads the same, complete key (the first writer wins; nobody sees half a file)."""
    script = (
        "import sys; from pathlib import Path; import base64, os\n"
        "from core.secrets import secret_from_file\n"
        "new = lambda: base64.b64encode(os.urandom(32)).decode()\n"
        "print(secret_from_file(Path(sys.argv[1]), new))\n"
    )
    target = tmp_path / "ledger_signing_key"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(target)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        for _ in range(8)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and len(keys.pop()) == 44

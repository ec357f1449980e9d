"""Browser journeys: Playwright driving Debian's Chromium against real server processes.

Chromium comes from Debian's `chromium` package (Playwright's own browser download is
not available here). Without it the journeys are skipped with a clear message, except
under CI=true, where a missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        message = (
            f"Chromium not found at {CHROMIUM}: browser journeys not run (apt-get install chromium)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


class Server:
    """A real Counterfund process (gunicorn) on a free port, with its own instance."""

    def __init__(self, tmp: Path, **env):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance = tmp
        self.env = {
            **os.environ,
            "COUNTERFUND_INSTANCE": str(tmp),
            "DATABASE_URL": f"sqlite:///{tmp / 'counterfund.db'}",
            "PUBLIC_URL": self.url,
            "JOB_RUNNER": "eager",
            "RATELIMIT_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
            **{k: str(v) for k, v in env.items()},
        }
        self.env.pop("REDIS_URL", None)
        self.flask("db", "upgrade")
        self.flask("demo", "load")
        self.log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "app:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail("server did not start: " + (tmp / "server.log").read_text())
                time.sleep(0.2)

    def flask(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def sql(self, statement: str, *args) -> list:
        """The test's hand on the clock: deadlines are moved in the database."""
        conn = sqlite3.connect(self.instance / "counterfund.db")
        try:
            rows = conn.execute(statement, args).fetchall()
            # Written behind the app's back: its cached public pages are stale now.
            conn.execute("UPDATE page_versions SET version = version + 1")
            conn.commit()
            return rows
        finally:
            conn.close()

    def mails(self, to: str) -> list[str]:
        folder = self.instance / "outbox"
        return (
            [p.read_text() for p in sorted(folder.glob("*.eml")) if f"To: {to}" in p.read_text()]
            if folder.exists()
            else []
        )

    def last_link(self, to: str, prefix: str = "/pledge/") -> str:
        link = re.findall(rf"({re.escape(prefix)}\S+)", self.mails(to)[-1])[-1]
        return self.url + link

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


def _sideways_overflow(page) -> str | None:
    """None when the document fits the viewport's width, else what sticks out."""
    found = page.evaluate(
        """() => {
          const width = window.innerWidth, doc = document.documentElement.scrollWidth;
          if (doc <= width) return null;
          const wide = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > width + 1)
            .slice(0, 3).map(e => e.tagName.toLowerCase() + '.' + e.className);
          return `document ${doc} px wide in a ${width} px viewport: ${wide.join(', ')}`;
        }"""
    )
    return found


class Journey:
    """A page that records every request it makes and can shoot both viewports."""

    def __init__(self, browser, server: Server, name: str, third_party_ok=()):
        self.server = server
        self.name = name
        self.context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[tuple[str, str]] = []  # (page url, requested url)
        self.page.on("request", lambda r: self.requests.append((self.page.url, r.url)))
        # Every document the journey loads, to be measured on a phone (assert_fits_phone).
        self.visited: list[str] = []
        self.page.on("load", lambda loaded: self.visited.append(loaded.url))
        self.third_party_ok = third_party_ok
        self.shots = 0

    def go(self, path: str):
        self.page.goto(path if path.startswith("http") else self.server.url + path)
        return self.page

    def shoot(self, step: str) -> None:
        folder = ARTIFACTS / self.name
        folder.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        self.page.screenshot(
            path=str(folder / f"{self.shots:02d}-{step}-desktop.png"), full_page=True
        )
        self.page.set_viewport_size(PHONE)
        self.page.screenshot(
            path=str(folder / f"{self.shots:02d}-{step}-phone.png"), full_page=True
        )
        overflow = _sideways_overflow(self.page)
        self.page.set_viewport_size(DESKTOP)
        assert overflow is None, f"{step}: {overflow}"

    def assert_fits_phone(self) -> None:
        """Every page the journey visited, loaded again on a phone (390 px, with the
        journey's cookies as they are now): the document is no wider than the screen."""
        phone = self.context.new_page()
        phone.set_viewport_size(PHONE)
        problems = []
        try:
            for url in dict.fromkeys(self.visited):
                if not url.startswith("http"):
                    continue
                phone.goto(url)
                overflow = _sideways_overflow(phone)
                if overflow is not None:
                    problems.append((url, phone.url, overflow))
        finally:
            phone.close()
        assert problems == [], f"pages wider than a phone: {problems}"

    def axe(self, label: str) -> None:
        """No serious or critical accessibility violations on the current page."""
        from axe_playwright_python.sync_playwright import Axe

        results = Axe().run(self.page)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{label}: {bad}"

    def assert_no_third_party_requests(self) -> None:
        own = urlsplit(self.server.url).netloc
        foreign = []
        for page_url, url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about") or parts.netloc == own:
                continue
            allowed = any(url.startswith(origin) for origin in self.third_party_ok)
            # The pages allowed Stripe's origins: the card form and the bank's step.
            on_payment_page = (
                "/card" in page_url
                or page_url.endswith("/pledge")
                or page_url.endswith("/authenticate")
            )
            if not (allowed and on_payment_page):
                foreign.append((page_url, url))
        assert foreign == [], f"requests to other origins: {foreign[:5]}"

    def close(self) -> None:
        self.context.close()

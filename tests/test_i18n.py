"""Translations: complete catalogs, no unmarked interface text, locale-aware output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.factories import submit

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ("es", "de", "pt_BR")
PLACEHOLDER = re.compile(r"%\([a-z_]+\)(?:\.\d+)?[sdf]")
# Text that stays as it is in every language: the name, file names, separators.
UNTRANSLATED = {
    "Counterfund",
    "Counterfund  · Counterfund",
    "proof.json",
    "checkpoint.txt",
    "#",
    "·",
    "—",
    "····",
}


def _template_text(source: str) -> list[str]:
    source = re.sub(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", " ", source, flags=re.S)
    source = re.sub(r"<(script|style|pre|code)\b.*?</\1>", " ", source, flags=re.S)
    source = re.sub(r"&[a-z]+;|&#\d+;", " ", re.sub(r"<[^>]+>", "\n", source))
    return [
        chunk.strip()
        for chunk in source.split("\n")
        if re.search(r"[A-Za-z]", chunk) and chunk.strip() not in UNTRANSLATED
    ]


def test_templates_have_no_unmarked_text():
    leaks = {}
    for template in sorted((ROOT / "templates").rglob("*.html")):
        found = _template_text(template.read_text())
        if found:
            leaks[str(template.relative_to(ROOT))] = found
    assert leaks == {}, f"wrap these in _(): {leaks}"


def test_the_catalog_template_matches_the_code(tmp_path):
    fresh = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-o",
            str(fresh),
            "--no-location",
            "--ignore-dirs=.venv tests bench migrations verifier instance",
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with open(fresh, "rb") as new, open(ROOT / "translations/messages.pot", "rb") as old:
        wanted = {m.id for m in read_po(new) if m.id}
        committed = {m.id for m in read_po(old) if m.id}
    assert wanted - committed == set(), "run `make translations-update` and translate"
    assert committed - wanted == set(), "run `make translations-update`: unused strings"


@pytest.mark.parametrize("locale", LOCALES)
def test_catalogs_are_complete(locale):
    with open(ROOT / "translations/messages.pot", "rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    with open(ROOT / f"translations/{locale}/LC_MESSAGES/messages.po", "rb") as f:
        catalog = read_po(f, locale=locale)
    missing, fuzzy, broken = [], [], []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        if not all(strings):
            missing.append(message.id)
        if message.fuzzy:
            fuzzy.append(message.id)
        if any(
            sorted(PLACEHOLDER.findall(ids[-1])) != sorted(PLACEHOLDER.findall(s))
            for s in strings
            if s
        ):
            broken.append(message.id)
    assert wanted - {m.id for m in catalog if m.id} == set()
    assert (missing, fuzzy, broken) == ([], [], [])


@pytest.mark.parametrize(
    ("header", "expected", "lang"),
    [
        ("es-ES,es;q=0.9", "Campañas", "es"),
        ("de-DE,de;q=0.8", "Kampagnen", "de"),
        ("pt-BR,pt;q=0.9", "Campanhas", "pt-BR"),
        ("fr-FR", "Campaigns", "en"),
    ],
)
def test_accept_language_picks_the_interface_language(app, header, expected, lang):
    page = app.test_client().get("/campaigns", headers={"Accept-Language": header})
    html = page.get_data(as_text=True)
    assert f"<h1>{expected}</h1>" in html
    assert f'<html lang="{lang}">' in html


def test_the_switcher_is_remembered(app):
    client = app.test_client()
    response = submit(
        client, "/language", {"locale": "de", "next": "/campaigns"}, form_page="/login"
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/campaigns")
    html = client.get("/campaigns", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "<h1>Kampagnen</h1>" in html
    response = submit(
        client, "/language", {"locale": "xx", "next": "https://evil.example/"}, form_page="/login"
    )
    assert "evil.example" not in response.headers["Location"]


def test_money_dates_and_form_errors_follow_the_locale(app):
    from campaigns.demo import load_demo
    from core.extensions import db

    with app.app_context():
        load_demo()
        db.session.commit()
    german = (
        app.test_client()
        .get("/c/riverside-warehouse-strike-fund", headers={"Accept-Language": "de"})
        .get_data(as_text=True)
    )
    assert "40.000,00\xa0€" in german and "Die Geschichte" in german
    spanish = submit(
        app.test_client(),
        "/login",
        {"email": "", "password": ""},
        headers={"Accept-Language": "es"},
    )
    assert "Este campo es obligatorio" in spanish.get_data(as_text=True)


def test_wtforms_own_messages_come_from_one_catalog_per_language(app):
    """Flask-WTF loads WTForms' catalog (its built-in messages) from disk for each
    request that shows a form unless the request already holds it: each language's
    catalog is loaded once and every request in that language shares it."""
    from flask import request
    from flask_wtf.i18n import translations

    seen = {}
    for locale, message in (
        ("de", "Keine gültige Auswahl."),
        ("es", "Opción inválida."),
        ("de", "Keine gültige Auswahl."),
        ("pt-BR", "Escolha inválida."),
        ("en", "Not a valid choice."),
    ):
        with app.test_request_context(headers={"Accept-Language": locale}):
            assert translations.gettext("Not a valid choice.") == message
            catalog = request.wtforms_translations
            assert seen.setdefault(locale, catalog) is catalog
    assert len({id(c) for c in seen.values()}) == 4

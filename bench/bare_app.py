"""The floor for bench/pages.py: a bare Flask endpoint, served by the same gunicorn."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def bare():
    return "ok"

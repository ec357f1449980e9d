"""The ledger's Ed25519 signing key and C2SP signed notes.

The key is configuration: LEDGER_SIGNING_KEY (base64 of the 32-byte seed), or a file
(LEDGER_SIGNING_KEY_FILE, default instance/ledger_signing_key) generated on first use.
Its verifier key ("<name>+<key id>+<base64 key>") is published at /api/v1/ledger/key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import current_app

from core.secrets import write_secret_once

_cache: dict[str, Ed25519PrivateKey] = {}


def _load() -> Ed25519PrivateKey:
    config = current_app.config
    if config.get("LEDGER_SIGNING_KEY"):
        seed = base64.b64decode(config["LEDGER_SIGNING_KEY"])
        return Ed25519PrivateKey.from_private_bytes(seed)
    path = Path(config["LEDGER_SIGNING_KEY_FILE"])
    cached = _cache.get(str(path))
    if cached is not None:
        return cached
    if not path.exists():
        write_secret_once(path, base64.b64encode(os.urandom(32)).decode())
    key = Ed25519PrivateKey.from_private_bytes(read_seed(path))
    _cache[str(path)] = key
    return key


def check_key(config) -> None:
    """At start-up: a configured or stored key must be a 32-byte seed (an empty or
    truncated file from a crash must stop the app, not sign with junk)."""
    if config.get("LEDGER_SIGNING_KEY"):
        if _seed(config["LEDGER_SIGNING_KEY"]) is None:
            raise SigningKeyError("LEDGER_SIGNING_KEY is not a base64 Ed25519 seed of 32 bytes")
        return
    path = Path(config["LEDGER_SIGNING_KEY_FILE"])
    if path.exists():
        read_seed(path)


class SigningKeyError(RuntimeError):
    """The key file is empty or malformed: refuse to sign rather than sign with junk."""


def _seed(text: str) -> bytes | None:
    """The 32-byte seed `text` is the base64 of, or None."""
    try:
        seed = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return seed if len(seed) == 32 else None


def read_seed(path: Path) -> bytes:
    seed = _seed(path.read_text().strip())
    if seed is None:
        raise SigningKeyError(
            f"{path} does not hold a base64 Ed25519 seed of 32 bytes; "
            "restore it from a backup (the published verifier key depends on it)"
        )
    return seed


def key_name() -> str:
    return current_app.config["LEDGER_ORIGIN"]


def public_key() -> bytes:
    return _load().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]


def verifier_key() -> str:
    name, public = key_name(), public_key()
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def sign_checkpoint(size: int, root: bytes) -> str:
    """A C2SP tlog-checkpoint body, signed as a C2SP signed note."""
    name = key_name()
    body = f"{name}\n{size}\n{base64.b64encode(root).decode()}\n"
    signature = _load().sign(body.encode())
    stamp = base64.b64encode(key_id(name, public_key()) + signature).decode()
    return f"{body}\n\u2014 {name} {stamp}\n"

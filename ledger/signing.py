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
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = os.urandom(32)
        # Written once, readable by the owner only; never overwritten.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(seed).decode() + "\n")
    seed = base64.b64decode(path.read_text().strip())
    key = Ed25519PrivateKey.from_private_bytes(seed)
    _cache[str(path)] = key
    return key


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

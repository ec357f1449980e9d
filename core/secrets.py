"""Secrets generated on first use into the instance folder (the session key, the
ledger's signing key, the key of anonymous supporters' public tags)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_secret_once(path: Path, value: str) -> None:
    """Create `path` holding `value`, atomically and readable by the owner only: the
    value goes to a temporary file in the same folder, is fsynced, then linked into
    place, so a crash or a concurrent reader never sees an empty or half-written file,
    and a file another process created first is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # first writer wins
            os.link(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        os.unlink(temporary)


def secret_from_file(path: Path, generate) -> str:
    """The secret in `path`, generated with `generate()` on first use; refuses an empty
    file (a crash of an older version, a truncated copy)."""
    if not path.exists():
        write_secret_once(path, generate())
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty: remove it to generate a new secret, or restore it")
    return value

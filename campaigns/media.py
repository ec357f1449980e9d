"""Cover images: checked for size and type, re-encoded so no metadata survives.

Photos from phones carry GPS positions and camera serials in EXIF; organizers of a
strike may not want either published. Re-encoding the pixels drops all of it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import current_app
from flask_babel import lazy_gettext as _l

from core.images import UploadError, reencode_image

MAX_SIDE = 2400


class ImageError(ValueError):
    pass


def covers_folder() -> Path:
    folder = Path(current_app.config["UPLOAD_FOLDER"]) / "covers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def process_cover(stream) -> str:
    """Validate and store an uploaded cover; returns the stored file's name."""
    max_bytes = current_app.config["COVER_IMAGE_MAX_BYTES"]
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(_l("The image is larger than %(mb).1f MB.", mb=max_bytes / 1048576))
    if not data:
        raise ImageError(_l("The file is empty."))
    try:
        clean, extension = reencode_image(
            data, max_pixels=current_app.config["COVER_IMAGE_MAX_PIXELS"], max_side=MAX_SIDE
        )
    except UploadError as exc:
        raise ImageError(str(exc)) from None
    name = f"{secrets.token_urlsafe(16)}.{extension}"
    (covers_folder() / name).write_bytes(clean)
    return name


def delete_cover(name: str | None) -> None:
    if name:
        (covers_folder() / Path(name).name).unlink(missing_ok=True)

"""Cover images: checked for size and type, re-encoded so no metadata survives.

Photos from phones carry GPS positions and camera serials in EXIF; organizers of a
strike may not want either published. Re-encoding the pixels drops all of it.
"""

from __future__ import annotations

import secrets
from io import BytesIO
from pathlib import Path

from flask import current_app
from flask_babel import lazy_gettext as _l
from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}
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
    Image.MAX_IMAGE_PIXELS = current_app.config["COVER_IMAGE_MAX_PIXELS"]
    try:
        with Image.open(BytesIO(data)) as probe:
            image_format = probe.format
            probe.verify()
        if image_format not in ALLOWED_FORMATS:
            raise ImageError(_l("Use a JPEG, PNG or WebP image."))
        with Image.open(BytesIO(data)) as image:
            image.load()
            if image.width * image.height > current_app.config["COVER_IMAGE_MAX_PIXELS"]:
                raise ImageError(_l("The image has too many pixels."))
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            clean = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ImageError(
            _l("This file is not an image we can read. Use JPEG, PNG or WebP.")
        ) from None
    extension = "png" if clean.mode == "RGBA" else "jpg"
    name = f"{secrets.token_urlsafe(16)}.{extension}"
    out = covers_folder() / name
    if extension == "png":
        clean.save(out, "PNG", optimize=True)
    else:
        clean.save(out, "JPEG", quality=85, optimize=True)
    return name


def delete_cover(name: str | None) -> None:
    if name:
        (covers_folder() / Path(name).name).unlink(missing_ok=True)

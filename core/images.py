"""Uploaded images and PDFs, re-encoded so no metadata survives.

Photos from phones carry GPS positions and camera serials in EXIF; a strike's
organizers may not want either published, nor a treasurer's receipt to say where it
was photographed. Images are decoded and re-encoded from their pixels alone (EXIF,
XMP, ICC-less text chunks and JPEG comments dropped); PDFs are rewritten page by page
without their document information or XMP metadata. Dimensions are read from the
header and checked before any pixel is decoded, so a small file that unpacks to
billions of pixels is refused cheaply.
"""

from __future__ import annotations

import warnings
from io import BytesIO

from flask_babel import lazy_gettext as _l
from PIL import Image, UnidentifiedImageError

IMAGE_FORMATS = {"JPEG", "PNG", "WEBP"}


class UploadError(ValueError):
    pass


def reencode_image(data: bytes, *, max_pixels: int, max_side: int) -> tuple[bytes, str]:
    """Pixels only, as PNG (with transparency) or JPEG. Returns (bytes, extension)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    too_many = UploadError(_l("The image has too many pixels."))
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its limit: the size check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(BytesIO(data))  # reads the header, decodes nothing
        with probe:
            if probe.format not in IMAGE_FORMATS:
                raise UploadError(_l("Use a JPEG, PNG or WebP image."))
            width, height = probe.size
            if width * height > max_pixels:
                raise too_many
            probe.verify()
        with Image.open(BytesIO(data)) as image:
            image.load()
            image.thumbnail((max_side, max_side))
            clean = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except UploadError:
        raise
    except Image.DecompressionBombError:
        raise too_many from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError(
            _l("This file is not an image we can read. Use JPEG, PNG or WebP.")
        ) from None
    # convert() copies `info` (EXIF, a JPEG comment, PNG text), and save() writes
    # what it finds there: start from nothing.
    clean.info = {}
    out = BytesIO()
    if clean.mode == "RGBA":
        clean.save(out, "PNG", optimize=True)
        return out.getvalue(), "png"
    clean.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), "jpg"


def strip_pdf(data: bytes) -> bytes:
    """The same pages without the document's metadata (author, software, XMP)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(BytesIO(data))
        writer = PdfWriter()
        for page in reader.pages:
            writer.add_page(page)
        writer.metadata = None
        out = BytesIO()
        writer.write(out)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        raise UploadError(_l("This PDF could not be read.")) from None
    return out.getvalue()

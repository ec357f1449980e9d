"""Uploaded images and PDFs, re-encoded so no metadata survives.

Photos from phones carry GPS positions and camera serials in EXIF; a strike's
organizers may not want either published, nor a treasurer's receipt to say where it
was photographed. Images are decoded and re-encoded from their pixels alone (EXIF,
XMP, ICC-less text chunks and JPEG comments dropped); PDFs are rewritten page by page
without their document information, XMP or annotation authors, their JPEG photos
re-encoded from pixels. Dimensions are read from the
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


def _opened(data: bytes) -> Image.Image:
    """An image file with its header read and nothing decoded. Pillow only warns below
    twice its pixel limit (and raises DecompressionBombError above it): the callers'
    own size check decides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(BytesIO(data))


def reencode_image(data: bytes, *, max_pixels: int, max_side: int) -> tuple[bytes, str]:
    """Pixels only, as PNG (with transparency) or JPEG. Returns (bytes, extension)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    too_many = UploadError(_l("The image has too many pixels."))
    try:
        with _opened(data) as probe:
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


# Where a PDF says who made it, beyond its document information: on pages, images and
# forms (XMP, an editor's private data, a thumbnail), and on annotations (their author,
# times and id). The annotations themselves (a comment, a "paid" stamp) stay.
_OBJECT_AUTHORSHIP = ("/Metadata", "/PieceInfo", "/LastModified", "/Thumb")
_ANNOTATION_AUTHORSHIP = ("/T", "/M", "/CreationDate", "/NM")


def strip_pdf(data: bytes, *, max_pixels: int) -> bytes:
    """The same pages without what says who made them and where: the document's
    information and XMP, the pages', images' and forms' own, annotations' authors, and
    the EXIF (GPS, camera) of photos embedded as JPEG, which are re-encoded from their
    pixels as image uploads are. A scanner app's receipt carries all of these."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(BytesIO(data))
        writer = PdfWriter()
        for page in reader.pages:
            writer.add_page(page)
        seen: set[int] = set()
        for page in writer.pages:
            _strip_object(page, seen, max_pixels)
            for annotation in page.get("/Annots") or []:
                annotation = annotation.get_object()
                _drop(annotation, _ANNOTATION_AUTHORSHIP)
                for appearance in (annotation.get("/AP") or {}).values():
                    _strip_object(appearance.get_object(), seen, max_pixels)
        writer.metadata = None
        # What was dropped above is still among the writer's objects, and would be
        # written unless those that nothing refers to any more are removed.
        writer.compress_identical_objects(remove_duplicates=False, remove_unreferenced=True)
        out = BytesIO()
        writer.write(out)
    except UploadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError, SyntaxError):
        # OSError covers Pillow's UnidentifiedImageError for a photo that is not a JPEG.
        raise UploadError(_l("This PDF could not be read.")) from None
    return out.getvalue()


def _drop(entries, keys: tuple[str, ...]) -> None:
    for key in keys:
        entries.pop(key, None)


def _strip_object(pdf_object, seen: set[int], max_pixels: int) -> None:
    """A page, form or image, and the forms and images it draws (each once)."""
    if id(pdf_object) in seen or not hasattr(pdf_object, "get"):
        return
    seen.add(id(pdf_object))
    _drop(pdf_object, _OBJECT_AUTHORSHIP)
    if pdf_object.get("/Subtype") == "/Image":
        _reencode_jpeg(pdf_object, max_pixels)
        if "/SMask" in pdf_object:
            _strip_object(pdf_object["/SMask"].get_object(), seen, max_pixels)
        return
    resources = pdf_object.get("/Resources")
    drawn = resources.get_object().get("/XObject") if resources is not None else None
    for xobject in drawn.get_object().values() if drawn is not None else ():
        _strip_object(xobject.get_object(), seen, max_pixels)


def _reencode_jpeg(image, max_pixels: int) -> None:
    """A JPEG image's pixels alone: its EXIF, XMP, comments and appended pictures go."""
    from pypdf.generic import NameObject, StreamObject

    if image.get("/Filter") not in ("/DCTDecode", ["/DCTDecode"]):
        return  # other encodings hold pixels only
    too_many = UploadError(_l("The image has too many pixels."))
    try:
        photo = _opened(image._data)  # the stream as stored: a JPEG file
    except Image.DecompressionBombError:
        raise too_many from None
    with photo:
        if photo.width * photo.height > max_pixels:
            raise too_many
        photo.load()
        clean = photo.copy() if photo.mode in ("L", "RGB") else photo.convert("RGB")
    clean.info = {}
    out = BytesIO()
    clean.save(out, "JPEG", quality=90)
    StreamObject.set_data(image, out.getvalue())  # stored as is: still DCTDecode
    if clean.mode != photo.mode:  # CMYK (its /Decode was for four channels)
        image[NameObject("/ColorSpace")] = NameObject("/DeviceRGB")
        image.pop("/Decode", None)

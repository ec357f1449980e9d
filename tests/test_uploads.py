"""Files people upload are published without the metadata they carried."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from campaigns.media import ImageError, covers_folder, process_cover
from ledger.disbursements import DisbursementError, receipts_folder, store_receipt


def _photo(fmt="JPEG", size=(60, 40), comment=b"") -> bytes:
    image = Image.new("RGB", size, (20, 120, 30))
    exif = Image.Exif()
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: latitude
    exif[0x010F] = "PhoneMaker"
    exif[0x0110] = "Model X200"
    out = io.BytesIO()
    extra = {"comment": comment} if comment else {}
    image.save(out, fmt, exif=exif.tobytes(), **extra)
    return out.getvalue()


def _pdf_with_metadata() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Author": "Jane Striker", "/Creator": "PhoneScanner 3"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_image_receipts_lose_gps_and_camera(app, fmt):
    data = _photo(fmt)
    assert b"PhoneMaker" in data
    with app.app_context():
        name, mimetype = store_receipt(io.BytesIO(data))
        stored = (receipts_folder() / name).read_bytes()
    assert mimetype.startswith("image/")
    assert b"PhoneMaker" not in stored and b"Model X200" not in stored
    assert not Image.open(io.BytesIO(stored)).getexif()


def test_pdf_receipts_lose_their_document_metadata(app):
    data = _pdf_with_metadata()
    assert b"Jane Striker" in data
    with app.app_context():
        name, mimetype = store_receipt(io.BytesIO(data))
        stored = (receipts_folder() / name).read_bytes()
    assert mimetype == "application/pdf"
    assert b"Jane Striker" not in stored and b"PhoneScanner" not in stored
    assert len(PdfReader(io.BytesIO(stored)).pages) == 1


def _scanned_pdf(photo_bytes: bytes | None = None) -> bytes:
    """A receipt as a phone's scanner app makes it: the photo (its EXIF, with GPS)
    embedded as a JPEG image, the page's own XMP, a comment signed by its author, and
    an editor's private data on the page."""
    from pypdf.generic import (
        ArrayObject,
        DictionaryObject,
        FloatObject,
        NameObject,
        NumberObject,
        StreamObject,
        TextStringObject,
    )

    def stream(data: bytes, **entries) -> StreamObject:
        made = StreamObject()
        made.set_data(data)
        made.update({NameObject(f"/{k}"): v for k, v in entries.items()})
        return made

    writer = PdfWriter()
    page = writer.add_blank_page(width=200, height=200)
    photo = stream(
        photo_bytes or _photo(),
        Type=NameObject("/XObject"),
        Subtype=NameObject("/Image"),
        Width=NumberObject(60),
        Height=NumberObject(40),
        ColorSpace=NameObject("/DeviceRGB"),
        BitsPerComponent=NumberObject(8),
        Filter=NameObject("/DCTDecode"),
        Metadata=writer._add_object(stream(b"<x:xmpmeta>Image of Jane Striker</x:xmpmeta>")),
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/XObject"): DictionaryObject({NameObject("/Im0"): writer._add_object(photo)})}
    )
    page[NameObject("/Contents")] = writer._add_object(stream(b"q 60 0 0 40 0 0 cm /Im0 Do Q"))
    page[NameObject("/Metadata")] = writer._add_object(
        stream(b"<x:xmpmeta><dc:creator>Page by Jane Striker</dc:creator></x:xmpmeta>")
    )
    note = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Text"),
            NameObject("/Rect"): ArrayObject([FloatObject(0)] * 2 + [FloatObject(10)] * 2),
            NameObject("/T"): TextStringObject("Comment by Jane Striker"),
            NameObject("/Contents"): TextStringObject("paid in cash"),
        }
    )
    page[NameObject("/Annots")] = ArrayObject([writer._add_object(note)])
    page[NameObject("/PieceInfo")] = DictionaryObject(
        {NameObject("/Editor"): TextStringObject("Private data of Jane Striker")}
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_scanned_pdf_receipt_loses_the_photos_exif_and_every_authors_name(app):
    data = _scanned_pdf()
    assert data.count(b"Jane Striker") == 4 and b"PhoneMaker" in data
    with app.app_context():
        name, _mimetype = store_receipt(io.BytesIO(data))
        stored = (receipts_folder() / name).read_bytes()
    assert b"Jane Striker" not in stored
    assert b"PhoneMaker" not in stored and b"Exif" not in stored
    page = PdfReader(io.BytesIO(stored)).pages[0]
    [photo] = page.images  # the photo itself is still there, and still a photo
    assert photo.image.size == (60, 40) and not photo.image.getexif()
    [note] = page["/Annots"]
    assert note.get_object()["/Contents"] == "paid in cash"


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose header claims another size (as a decompression bomb's does)."""
    data = bytearray(_photo())
    frame = data.index(b"\xff\xc0")  # SOF0: length, precision, then height and width
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("side", [6000, 20000])  # over the limit; over twice Pillow's own
def test_a_pdf_receipt_whose_photo_unpacks_to_too_many_pixels_is_refused(app, side):
    with app.app_context():
        with pytest.raises(DisbursementError, match="too many pixels"):
            store_receipt(io.BytesIO(_scanned_pdf(_jpeg_claiming(side, side))))
        assert not list(receipts_folder().glob("*"))


@pytest.mark.parametrize("photo", [b"\xff\xd8 not a JPEG after all", _photo()[:200]])
def test_a_pdf_receipt_whose_photo_cannot_be_decoded_is_refused(app, photo):
    with app.app_context():
        with pytest.raises(DisbursementError, match="could not be read"):
            store_receipt(io.BytesIO(_scanned_pdf(photo)))
        assert not list(receipts_folder().glob("*"))


def test_a_broken_pdf_receipt_is_refused(app):
    with app.app_context(), pytest.raises(DisbursementError, match="could not be read"):
        store_receipt(io.BytesIO(b"%PDF-1.4 nothing else"))


def test_cover_images_lose_their_jpeg_comment(app):
    data = _photo(comment=b"shot at 12 Union Street")
    assert b"12 Union Street" in data
    with app.app_context():
        name = process_cover(io.BytesIO(data))
        stored = (covers_folder() / name).read_bytes()
    assert b"12 Union Street" not in stored
    assert "comment" not in Image.open(io.BytesIO(stored)).info


def test_a_huge_image_is_refused_from_its_header(app):
    """7000 x 7000 pixels in a small PNG: refused on its header's dimensions."""
    out = io.BytesIO()
    Image.new("1", (7000, 7000)).save(out, "PNG", optimize=True)
    data = out.getvalue()
    assert len(data) < 200_000
    with app.app_context(), pytest.raises(ImageError, match="too many pixels"):
        process_cover(io.BytesIO(data))
    with app.app_context(), pytest.raises(DisbursementError, match="too many pixels"):
        store_receipt(io.BytesIO(data))

"""Images made in the test run (no binary fixtures in the repository)."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photo(width: int, height: int, *, sigma: float = 10.0) -> Image.Image:
    """A photo-like RGB picture: gradients under noise, so JPEG has real work to do."""
    return _photo(width, height, sigma).copy()


@functools.cache
def _photo(width: int, height: int, sigma: float) -> Image.Image:
    grad = Image.linear_gradient("L").resize((width, height))
    noise = [Image.effect_noise((width, height), sigma) for _ in range(3)]
    return Image.merge(
        "RGB",
        (
            Image.blend(grad, noise[0], 0.5),
            Image.blend(grad.transpose(Image.Transpose.FLIP_LEFT_RIGHT), noise[1], 0.5),
            noise[2],
        ),
    )


def png_header_only(width: int, height: int, colour_type: int = 2, depth: int = 8) -> bytes:
    """A PNG that claims a size and has no usable pixel data: decoding it would be the bomb
    (colour type 2: RGB, 6: RGBA, 0: grey)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def text_pdf(pages: list[str]) -> bytes:
    """A minimal PDF with one line of Helvetica text on each page."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
            ).encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    return pdf_file(objects)


def many_pages_pdf(count: int) -> bytes:
    """A PDF of `count` pages that share one line of text (a few hundred KB)."""
    content = b"BT /F1 18 Tf 72 720 Td (same page) Tj ET"
    kids = " ".join(f"{5 + i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    return pdf_file(objects + [page] * count)


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog) with its xref."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def jpeg_claiming(
    width: int, height: int, *, progressive: bool = True, subsampling: int = 0
) -> bytes:
    """A small JPEG whose frame header claims `width`×`height` pixels (a few hundred bytes:
    what it takes to post one). Decoding a progressive one holds every coefficient of the
    claimed size (10,000×10,000 at 4:4:4: 600 MB), however little data follows."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(
        out, "JPEG", progressive=progressive, subsampling=subsampling
    )
    data = bytearray(out.getvalue())
    frame = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_first_scan_of_one(width: int, height: int) -> bytes:
    """A baseline JPEG claiming `width`×`height` whose first scan carries one component
    of three: libjpeg then holds all the coefficients, as for a progressive one."""
    data = bytearray(jpeg_claiming(width, height, progressive=False))
    scan = data.find(b"\xff\xda")
    data[scan + 4] = 1
    return bytes(data)

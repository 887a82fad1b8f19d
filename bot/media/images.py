"""Images made ready for a model: real format checked, downscaled, re-encoded, metadata gone.

CPU-bound and synchronous: callers run it in a thread (asyncio.to_thread).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal

from bot.media.kinds import ACCEPTED_IMAGES, MediaError, image_format
from bot.types import Image as PromptImage
from bot.types.files import display_name, file_label
from bot.types.limits import MAX_PIXELS

if TYPE_CHECKING:  # Pillow itself loads with the first image (~3 MB a process may not need)
    from PIL import Image

MediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]

# Claude scales a longer edge down to this itself: sending more costs upload and
# decode time, not detail (shared/REFERENCE-features.md §1).
MAX_EDGE = 1568
# Claude refuses an image over 5 MiB and its docs do not say whether of the base64 or
# the raw bytes; 3/4 of it in raw bytes is safe either way, and OpenAI allows 20 MB.
MAX_BYTES = 5 * 1024 * 1024 * 3 // 4
# MAX_PIXELS: what one decode may hold, in pixels of an opaque PNG (~5 bytes each at the
# peak: decoded whole, then scaled; ~200 MB in all). A JPEG is decoded at 1/2..1/8 scale
# when that still covers the target, so larger photos pass. Other images count as many
# of those pixels as they take (measured with Pillow 13, libjpeg-turbo 3, libwebp 1.6).
# Scaling a see-through image copies it whole (Pillow premultiplies its alpha): twice.
_SEE_THROUGH_WEIGHT = 2
# Pillow's WebP decoder holds the picture three or four times over (~16 bytes a pixel; a
# 1 MB WebP of 36 MP took 550 MB).
_WEBP_WEIGHT = 4
# A progressive JPEG (or one whose first scan lacks a colour) is decoded from all its
# scans at once: libjpeg holds every coefficient of the whole image (2 bytes each, 64 an
# 8×8 block) whatever the scale it outputs. A 544-byte file claiming 13,000×13,000
# pixels took 1 GB, a 10,000×10,000 photo 310 MB (4:2:0) or 600 MB (4:4:4).
_PIXEL_BYTES = 5

_JPEG_QUALITY = 85
_SMALLER_QUALITIES = (70, 55)
_SHRINK = 0.75
_MIN_EDGE = 64
# Decoders for what providers accept and nothing else (_open): Pillow's other plugins (PSD,
# FITS, DDS…) are where its memory-safety bugs keep turning up.
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
# Phone cameras write MPO (a JPEG followed by depth or gain maps); Pillow's JPEG
# opener returns it under that name.
_JPEG = ("JPEG", "MPO")
# Modes Pillow scales with any filter: an image in another is converted before scaling.
_RESIZABLE = ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L")
# Longest side over shortest: past this, scaled to MAX_EDGE it shows almost nothing (a
# 1×39,000,000 PNG of 76 KB became a 1×1568 image), and its decode is costly for nothing.
MAX_ASPECT = 64
# EXIF orientation → the transpose that shows it upright (ImageOps.exif_transpose's
# table): read from the file as opened, applied after the resize, to fewer pixels.
_UPRIGHT = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image as it will be sent: encoded bytes without metadata, and what they are."""

    data: bytes
    media_type: MediaType
    width: int
    height: int
    name: str
    sha256: str  # hex, of `data`

    def __repr__(self) -> str:
        return (
            f"PreparedImage({self.name!r}, {self.media_type}, {self.width}x{self.height}, "
            f"{len(self.data)} bytes, sha256={self.sha256[:12]}…)"
        )

    def to_image(self) -> PromptImage:
        """The value type a ChatMessage carries."""
        return PromptImage(self.media_type, self.data, self.name, self.sha256)


def prepare_image(
    data: bytes,
    name: str,
    *,
    max_edge: int = MAX_EDGE,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> PreparedImage:
    """`data` as a JPEG or PNG of at most `max_edge` px a side and `max_bytes` bytes.

    Upright per EXIF, first frame of an animation, opaque, no metadata. Raises
    MediaError. It may hold a few hundred MB while it runs: callers run a few at a time.
    """
    shown = display_name(name)
    source = _decode(data, shown, max_edge, max_pixels)
    # Scaled down first: the conversions below then copy the small picture, not a
    # 40-megapixel one (a 16-bit RGBA PNG had taken 525 MB).
    picture = _fit(_resizable(source), max_edge, photo=source.format in _JPEG)
    picture, alpha = _normalize(picture)
    if alpha:
        picture = _flattened(picture)
    picture = _upright(picture, source)
    keep_png = source.format in ("PNG", "GIF")
    encoded, media_type, picture = _encode(picture, keep_png, max_bytes, shown)
    return PreparedImage(
        encoded,
        media_type,
        picture.width,
        picture.height,
        file_label(name),  # as the history and the prompt name it: markdown is theirs
        hashlib.sha256(encoded).hexdigest(),
    )


def _decode(data: bytes, shown: str, max_edge: int, max_pixels: int) -> Image.Image:
    from PIL import Image

    try:
        image = _open(data)
    except Image.DecompressionBombError:  # Pillow's own, kept in its WebP and GIF readers
        raise _too_large(shown, None, max_pixels) from None
    except Exception:  # Pillow raises many types for bad input; all mean "cannot read"
        found = image_format(data)
        if found and found.upper() not in _FORMATS:
            article = "an" if found in ("AVIF", "ICO") else "a"  # said "ay-vif", "eye-co"
            raise MediaError(
                f"{shown} is {article} {found} image, which models are not sent; attach "
                f"{ACCEPTED_IMAGES}."
            ) from None
        raise MediaError(
            f"{shown} is not an image that can be read; attach {ACCEPTED_IMAGES}."
        ) from None
    full = image.size
    # Held in all its scans' coefficients (before any scaling), in pixels as MAX_PIXELS
    # counts them; 0 for a JPEG decoded a band at a time, and for other formats.
    scans = _jpeg_scans_cost(image, data) if image.format in _JPEG else 0
    if image.format in _JPEG and max(image.size) > max_edge:
        # libjpeg scales while decoding (1/2..1/8): most of the speed on big photos.
        scale = max_edge / max(image.size)
        image.draft(None, (max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    see_through = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    weight = _SEE_THROUGH_WEIGHT if see_through else 1
    if image.format == "WEBP":
        weight = _WEBP_WEIGHT
    cost = image.width * image.height * weight + scans
    if cost > max_pixels:
        if scans:
            kind = "progressive JPEG" if "progressive" in image.info else "multi-scan JPEG"
            # The most one like it may have, in whole megapixels: its cost scaled down.
            most = max_pixels * full[0] * full[1] // cost // 1_000_000 * 1_000_000
            raise _too_large(shown, full, most, kind=kind)
        if image.format == "WEBP":
            raise _too_large(shown, full, max_pixels // weight, kind="WebP")
        raise _too_large(shown, full, max_pixels, see_through=see_through)
    if max(image.size) > MAX_ASPECT * min(image.size):
        width, height = image.size
        raise MediaError(
            f"{shown} is {width}×{height} pixels: too long and thin to show anything once "
            f"scaled to {max_edge} pixels on its long side. Crop it into parts and attach those."
        )
    try:
        image.load()
    except Exception:
        raise MediaError(
            f"{shown} could not be decoded (the file may be damaged or cut short); "
            "save it again and attach it again."
        ) from None
    return image


def _open(data: bytes) -> Image.Image:
    """`data` opened (its header read, no pixel decoded) by Pillow's reader for the format
    its bytes announce, one of _FORMATS; ValueError for any other.

    Not by Image.open, which holds it to Pillow's own pixel limit first (a
    DecompressionBombWarning in the operator's log past 89 MP, an error past 179 MP):
    MAX_PIXELS is the only one here, counting what the decode will hold (a JPEG read at
    1/8 scale, 1/64 of its pixels) and checked before anything is decoded. Pillow's limit
    stays for its other callers (character cards).
    """
    from PIL import GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    readers: dict[str, Callable[[IO[bytes]], Image.Image]] = {
        "JPEG": JpegImagePlugin.jpeg_factory,  # a phone's MPO too
        "PNG": PngImagePlugin.PngImageFile,
        "GIF": GifImagePlugin.GifImageFile,
        "WEBP": WebPImagePlugin.WebPImageFile,
    }
    reader = readers.get((image_format(data) or "").upper())
    if reader is None:
        raise ValueError("not an image format sent to models")
    return reader(io.BytesIO(data))


def _too_large(
    shown: str,
    size: tuple[int, int] | None,
    max_pixels: int,
    *,
    see_through: bool = False,
    kind: str = "",
) -> MediaError:
    dims = f" ({size[0]}×{size[1]} pixels)" if size else ""
    most = f"{max_pixels / 1e6:.3g} megapixels"
    if see_through:
        most += f" ({max_pixels / _SEE_THROUGH_WEIGHT / 1e6:.3g} for one with transparency)"
    what = f"{kind} images" if kind else "images"
    return MediaError(
        f"{shown} is too large{dims}; {what} up to {most} are accepted. Scale it down and "
        "attach it again."
    )


def _jpeg_scans_cost(image: Image.Image, data: bytes) -> int:
    """What libjpeg holds of a JPEG that is decoded from all its scans at once (a
    progressive one, or one whose first scan lacks a component), in pixels as MAX_PIXELS
    counts them: each component's 8×8 blocks at full size, 128 bytes each. 0 for a JPEG
    decoded a band at a time, whose cost is its (reduced) output."""
    components = getattr(image, "layer", None) or []
    progressive = "progressive" in image.info or "progression" in image.info
    if not components or (not progressive and _first_scan_components(data) == len(components)):
        return 0
    most_h = max(h for _, h, _, _ in components) or 1
    most_v = max(v for _, _, v, _ in components) or 1
    width, height = image.size
    blocks = 0
    for _, h, v, _ in components:
        across = -(-width * h // (most_h * 8))
        down = -(-height * v // (most_v * 8))
        blocks += (-(-across // max(1, h)) * max(1, h)) * (-(-down // max(1, v)) * max(1, v))
    return -(-blocks * 128 // _PIXEL_BYTES)


def _first_scan_components(data: bytes) -> int:
    """How many components a JPEG's first scan carries (its SOS header says), 0 when it
    cannot be found (read as the costlier kind)."""
    for marker, at in _jpeg_segments(data):
        if marker == 0xDA:
            return data[at + 4]
    return 0


# Start-of-frame markers (SOF0..SOF15 but DHT, JPG and DAC): where a JPEG's size is.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dimensions(data: bytes) -> tuple[int, int] | None:
    """A PNG's or JPEG's (width, height), from its header: nothing is decoded. None for
    another format, or a header that cannot be read. What prepare_image makes is one of
    the two, upright (no EXIF turns it)."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        for marker, at in _jpeg_segments(data):
            if marker in _SOF and at + 9 <= len(data):
                height = int.from_bytes(data[at + 5 : at + 7], "big")
                return int.from_bytes(data[at + 7 : at + 9], "big"), height
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """Each marker segment of a JPEG's header (its marker, where it starts), up to its
    first scan's (SOS) included. Walks the marker segments, never the compressed data."""
    at = 2
    while at + 4 < len(data):
        if data[at] != 0xFF:
            return
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
        else:
            yield marker, at
            if marker == 0xDA:
                return
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")


def _resizable(image: Image.Image) -> Image.Image:
    """`image` in a mode Pillow scales with any filter (a palette, 1-bit, CMYK or 16-bit
    grey image is converted first, as _normalize would have)."""
    if "transparency" in image.info or image.mode == "PA":
        # A colour or palette entry made see-through: an alpha band before scaling, or
        # the scaler blends that colour into its neighbours, which then show.
        return image.convert("RGBA")
    if image.mode in _RESIZABLE:
        return image
    return image.convert("RGB")


def _normalize(image: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB or L, or RGBA when some pixel is see-through; and whether it is."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scaled, not clipped (a plain convert turns it almost white).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        if image.mode != "RGBA":
            image = image.convert("RGBA")
        low, _ = image.getchannel("A").getextrema()  # of the scaled picture: small
        if low == 255:
            return image.convert("RGB"), False
        return image, True
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return image, False


def _fit(image: Image.Image, max_edge: int, *, photo: bool) -> Image.Image:
    from PIL import Image

    longest = max(image.size)
    if longest <= max_edge:
        return image
    scale = max_edge / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Lanczos keeps small text in screenshots legible; on a photo, already scaled while
    # decoding, bicubic looks the same and costs ~20 ms less per 12 MP photo.
    method = Image.Resampling.BICUBIC if photo else Image.Resampling.LANCZOS
    return image.resize(size, method, reducing_gap=3.0)


def _upright(image: Image.Image, source: Image.Image) -> Image.Image:
    from PIL import Image

    orientation = source.getexif().get(_ORIENTATION_TAG, 1)
    name = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(Image.Transpose[name]) if name is not None else image


# Mean grey level (0-255) of what a see-through picture shows from which it is clearly
# light (a colour of 160 stands out three times as well on black as on white).
_LIGHT = 160


def _flattened(image: Image.Image) -> Image.Image:
    """An RGBA picture laid on white, or on black when what shows of it is clearly light
    (white text made for a dark chat theme).

    Not sent with its alpha: decoders disagree about what is under it. llama.cpp's server
    reads RGB only and shows the colour left under each see-through pixel (black, once
    scaled); ollama paints white there (ggml-org/llama.cpp tools/mtmd/mtmd-helper.cpp,
    ollama/ollama model/imageproc/images.go)."""
    from PIL import Image, ImageStat

    alpha = image.getchannel("A")
    shown = alpha.point([0] * 128 + [255] * 128)  # the pixels more opaque than not
    grey = ImageStat.Stat(image.convert("L"), mask=shown)
    light = grey.count[0] > 0 and grey.mean[0] >= _LIGHT
    flat = Image.new("RGB", image.size, "black" if light else "white")
    flat.paste(image, mask=alpha)
    return flat


def _encode(
    image: Image.Image, keep_png: bool, max_bytes: int, shown: str
) -> tuple[bytes, MediaType, Image.Image]:
    from PIL import Image

    # Nothing from the source travels: no EXIF (GPS), no ICC profile, no text chunks.
    image.info = {}
    if keep_png:
        encoded = _save(image, "PNG")
        if len(encoded) <= max_bytes:
            return encoded, "image/png", image
    for quality in (_JPEG_QUALITY, *_SMALLER_QUALITIES):
        encoded = _save(image, "JPEG", quality)
        if len(encoded) <= max_bytes:
            return encoded, "image/jpeg", image
    while min(image.size) * _SHRINK >= _MIN_EDGE:
        size = (round(image.width * _SHRINK), round(image.height * _SHRINK))
        image = image.resize(size, Image.Resampling.LANCZOS)
        encoded = _save(image, "JPEG", _SMALLER_QUALITIES[0])
        if len(encoded) <= max_bytes:
            return encoded, "image/jpeg", image
    raise MediaError(f"{shown} cannot be made smaller than {max_bytes:,} bytes.")


def _save(image: Image.Image, fmt: str, quality: int = 0) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", compress_level=6)
    else:
        image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()

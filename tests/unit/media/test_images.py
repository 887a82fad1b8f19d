"""Images prepared for a model: real format, size, orientation, first frame, no metadata."""

from __future__ import annotations

import hashlib
import io
import os
import warnings

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from bot.media import MAX_BYTES, MediaError, PreparedImage, dimensions, prepare_image
from tests.unit.media.samples import (
    encode,
    jpeg_claiming,
    jpeg_first_scan_of_one,
    photo,
    png_header_only,
)

RED = (255, 0, 0)


def opened(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.data))
    image.load()
    return image


def close(pixel: object, colour: tuple[int, ...], slack: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= slack for a, b in zip(pixel, colour, strict=False))


def exif_rotated_with_gps() -> bytes:
    """A 4000×3000 photo stored sideways (EXIF orientation 6) with GPS, ICC and XMP."""
    image = photo(4000, 3000)
    image.paste(RED, (0, 0, 800, 600))  # stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 12.0)
    gps[3], gps[4] = "E", (13.0, 24.0, 18.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><secret>home</secret></x:xmpmeta>'
    return encode(image, "JPEG", quality=90, exif=exif, icc_profile=icc, xmp=xmp)


def test_a_big_photo_is_downscaled_turned_upright_and_stripped() -> None:
    data = exif_rotated_with_gps()
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(0x8825)  # the GPS really is in the input
    assert "icc_profile" in source.info

    prepared = prepare_image(data, "holiday.jpg")

    assert prepared.media_type == "image/jpeg"
    assert (prepared.width, prepared.height) == (1176, 1568)  # portrait once upright
    image = opened(prepared)
    assert image.format == "JPEG"
    assert image.size == (1176, 1568)
    # Rotating 90° clockwise takes the stored top-left corner to the top-right.
    assert close(image.getpixel((1100, 50)), RED)
    assert not close(image.getpixel((50, 50)), RED)
    assert not image.getexif()
    for marker in (b"Exif", b"PhoneMaker", b"<secret>", b"ICC_PROFILE", b"http://ns.adobe"):
        assert marker not in prepared.data
    assert set(image.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}


def test_the_hash_and_the_prompt_image_describe_the_bytes_sent() -> None:
    prepared = prepare_image(encode(photo(300, 200), "JPEG"), "cat.jpg")
    assert prepared.sha256 == hashlib.sha256(prepared.data).hexdigest()
    image = prepared.to_image()
    assert (image.media_type, image.data, image.name, image.sha256) == (
        "image/jpeg",
        prepared.data,
        "cat.jpg",
        prepared.sha256,
    )
    assert str(len(prepared.data)) in repr(prepared)  # bytes stay out of logs


def test_an_image_keeps_its_name_as_written_for_the_history_and_the_prompt() -> None:
    """The bot's own messages escape a name's markdown; the name the model reads and the
    key check looks at is the file's (`_x_` escaped hid a key in it from that check)."""
    name = "__draft__ [v2] sk-proj-Ab3dEf_-Gh1jKl2mNo3pQr4sTu5.png"
    assert prepare_image(encode(photo(30, 20), "PNG"), name).name == name


def test_a_small_photo_keeps_its_size_but_not_its_metadata() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    data = encode(photo(640, 480), "JPEG", exif=exif)
    prepared = prepare_image(data, "small.jpg")
    assert (prepared.width, prepared.height) == (640, 480)
    assert b"PhoneMaker" not in prepared.data


def test_a_transparent_png_stays_png_laid_on_white() -> None:
    """Sent with its alpha, its see-through part showed black to a decoder that reads RGB
    only (llama.cpp's): see tests/e2e/test_console_attachments.py."""
    image = Image.new("RGBA", (2400, 1200), (0, 128, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 1200, 1200))
    prepared = prepare_image(encode(image, "PNG"), "logo.png")
    assert prepared.media_type == "image/png"
    assert (prepared.width, prepared.height) == (1568, 784)
    out = opened(prepared)
    assert out.mode == "RGB"
    assert out.getpixel((100, 100)) == (255, 255, 255)
    assert out.getpixel((1500, 700)) == (0, 128, 255)


def test_a_light_drawing_on_transparency_is_laid_on_black() -> None:
    """White text made for a dark chat theme would vanish on white."""
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((255, 255, 230, 255), (50, 25, 150, 75))
    out = opened(prepare_image(encode(image, "PNG"), "sticker.png"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (0, 0, 0) and out.getpixel((100, 50)) == (255, 255, 230)


def test_a_png_screenshot_without_transparency_stays_png_without_alpha() -> None:
    image = Image.new("RGBA", (1920, 1080), "white")  # an alpha channel nobody uses
    image.paste((20, 20, 20, 255), (100, 100, 1800, 140))
    prepared = prepare_image(encode(image, "PNG"), "screen.png")
    assert prepared.media_type == "image/png"
    assert opened(prepared).mode == "RGB"


def test_an_opaque_webp_is_sent_as_jpeg() -> None:
    data = encode(photo(300, 200).convert("RGBA"), "WEBP")
    assert prepare_image(data, "photo.webp").media_type == "image/jpeg"


def test_png_metadata_is_not_sent() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(photo(200, 100), "PNG", pnginfo=info, exif=exif, icc_profile=icc)
    assert {"Comment", "exif", "icc_profile"} <= set(Image.open(io.BytesIO(data)).info)
    prepared = prepare_image(data, "shot.png")
    assert prepared.media_type == "image/png"
    assert not set(opened(prepared).info) & {"Comment", "exif", "icc_profile"}
    assert b"taken at home" not in prepared.data


def test_an_animated_gif_sends_its_first_frame() -> None:
    frames = [Image.new("RGB", (120, 80), colour) for colour in (RED, (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    prepared = prepare_image(data, "party.gif")
    out = opened(prepared)
    assert prepared.media_type == "image/png"
    assert getattr(out, "n_frames", 1) == 1
    assert close(out.convert("RGB").getpixel((60, 40)), RED, slack=0)


def test_an_animated_webp_sends_its_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((0, 0, 255), RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    out = opened(prepare_image(data, "anim.webp"))
    assert close(out.convert("RGB").getpixel((32, 32)), (0, 0, 255), slack=8)


@pytest.mark.parametrize(("width", "height"), [(8000, 6000), (100_000, 100_000)])
def test_a_huge_image_is_refused_before_it_is_decoded(width: int, height: int) -> None:
    with pytest.raises(MediaError, match=r"huge\.png is too large.*40 megapixels"):
        prepare_image(png_header_only(width, height), "huge.png")


def test_a_see_through_image_counts_twice_against_the_pixel_cap() -> None:
    """Media probe: a 308 KB 16-bit RGBA PNG of 6300×6300 (39.7 MP) took 525 MB: scaling
    an image with alpha copies it whole. It is refused, an opaque one of that size not."""
    with pytest.raises(MediaError) as err:
        prepare_image(png_header_only(6300, 6300, colour_type=6, depth=16), "bomb.png")
    assert str(err.value) == (
        "bomb.png is too large (6300×6300 pixels); images up to 40 megapixels (20 for one "
        "with transparency) are accepted. Scale it down and attach it again."
    )
    data = encode(Image.new("RGBA", (4400, 4400), (10, 20, 30, 128)), "PNG")  # 19.4 MP
    out = opened(prepare_image(data, "big.png"))
    assert out.size == (1568, 1568) and out.mode == "RGB"


def test_an_image_too_long_and_thin_to_show_anything_is_refused() -> None:
    """Media probe: a 76 KB PNG of 1×39,000,000 took 431 MB and 4.7 s to become 1×1568."""
    with pytest.raises(MediaError) as err:
        prepare_image(png_header_only(1, 39_000_000, colour_type=0), "tall.png")
    assert str(err.value) == (
        "tall.png is 1×39000000 pixels: too long and thin to show anything once scaled to "
        "1568 pixels on its long side. Crop it into parts and attach those."
    )
    long_screenshot = encode(Image.new("RGB", (1080, 20_000), "white"), "PNG")  # 1:18.5
    assert opened(prepare_image(long_screenshot, "scroll.png")).size == (85, 1568)


def test_a_big_16_bit_grey_png_is_scaled_before_it_is_converted() -> None:
    data = encode(Image.new("I;16", (3000, 2000), 65535), "PNG")
    out = opened(prepare_image(data, "depth.png"))
    assert out.size == (1568, 1045) and out.convert("L").getpixel((700, 500)) == 255


def test_a_colour_made_see_through_stays_see_through_when_scaled() -> None:
    """Review: a PNG whose transparency is a key colour (tRNS) was scaled before that
    colour became alpha, so the scaler blended it into opaque magenta fringes."""
    image = Image.new("RGB", (4000, 2000), (255, 0, 255))
    image.paste((255, 255, 255), (2000, 0, 4000, 2000))
    out = io.BytesIO()
    image.save(out, "PNG", transparency=(255, 0, 255))
    sent = opened(prepare_image(out.getvalue(), "keyed.png")).convert("RGB")
    assert sent.size == (1568, 784)
    for x in range(770, 800):  # across the edge: magenta is see-through, nowhere shown
        red, green, blue = sent.getpixel((x, 400))  # type: ignore[misc]
        assert abs(red - green) < 30 and abs(blue - green) < 30, (x, (red, green, blue))


def test_the_pixel_cap_counts_what_a_jpeg_decodes_at_reduced_scale() -> None:
    # 12 MP in the file, 3 MP decoded: libjpeg halves it while reading.
    data = encode(photo(4000, 3000), "JPEG")
    prepared = prepare_image(data, "big.jpg", max_pixels=4_000_000)
    assert (prepared.width, prepared.height) == (1568, 1176)
    with pytest.raises(MediaError, match=r"4000×3000 pixels"):
        prepare_image(
            encode(Image.new("RGB", (4000, 3000)), "PNG"), "big.png", max_pixels=4_000_000
        )


def test_a_progressive_jpeg_counts_every_coefficient_it_decodes() -> None:
    """Media probe: a 544-byte progressive JPEG claiming 13,000×13,000 pixels took 1 GB to
    decode though it was read at 1/8 scale (10,000×10,000: 600 MB); refused before it is.
    At 4:2:0 its coefficients take half as much: a 7600×7600 one fits, not 10,000²."""
    with pytest.raises(MediaError) as err:
        prepare_image(jpeg_claiming(10_000, 10_000), "bomb.jpg")
    assert str(err.value) == (
        "bomb.jpg is too large (10000×10000 pixels); progressive JPEG images up to 31 "
        "megapixels are accepted. Scale it down and attach it again."
    )
    with pytest.raises(MediaError, match=r"progressive JPEG images up to 60 megapixels"):
        prepare_image(jpeg_claiming(10_000, 10_000, subsampling=2), "bomb.jpg")
    # The same claim in a baseline JPEG is read a band at a time, at 1/4 scale: 30 MB.
    prepared = prepare_image(jpeg_claiming(10_000, 10_000, progressive=False), "wide.jpg")
    assert (prepared.width, prepared.height) == (1568, 1568)
    # A first scan without every component is decoded as a progressive one is.
    with pytest.raises(MediaError, match=r"multi-scan JPEG images up to 31 megapixels"):
        prepare_image(jpeg_first_scan_of_one(10_000, 10_000), "scans.jpg")


def test_our_pixel_cap_alone_decides_not_pillows() -> None:
    """Media probe: a baseline JPEG over Pillow's own limit (89 MP), which ours accepts
    (read at 1/8 scale it holds 1/64 of its pixels), put a DecompressionBombWarning in the
    operator's log; past twice that, Pillow refused it outright, as too large for the
    40 MP the refusal named. Pillow's limit stays as it was for its other callers."""
    default = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        for side in (10_000, 14_000):  # 100 MP: Pillow warned; 196 MP: Pillow refused
            data = jpeg_claiming(side, side, progressive=False)
            prepared = prepare_image(data, "scan.jpg")
            assert (prepared.width, prepared.height) == (1568, 1568)
        # Ours still refuses before decoding, and names the size.
        with pytest.raises(MediaError) as err:
            prepare_image(png_header_only(20_000, 20_000), "huge.png")
    assert str(err.value) == (
        "huge.png is too large (20000×20000 pixels); images up to 40 megapixels are "
        "accepted. Scale it down and attach it again."
    )
    assert Image.MAX_IMAGE_PIXELS == default


def test_an_ordinary_progressive_photo_is_read() -> None:
    data = encode(photo(4000, 3000), "JPEG", progressive=True)
    prepared = prepare_image(data, "web.jpg")
    assert (prepared.media_type, prepared.width, prepared.height) == ("image/jpeg", 1568, 1176)


def test_a_webp_counts_what_its_decoder_holds() -> None:
    """Media probe: a 1 MB WebP of 6000×6000 took 550 MB (Pillow's decoder holds the
    picture three or four times over); a 4K one (8.3 MP) is read."""
    with pytest.raises(MediaError) as err:
        prepare_image(encode(Image.new("RGB", (4000, 3000), "white"), "WEBP"), "wall.webp")
    assert str(err.value) == (
        "wall.webp is too large (4000×3000 pixels); WebP images up to 10 megapixels are "
        "accepted. Scale it down and attach it again."
    )
    prepared = prepare_image(encode(Image.new("RGB", (3840, 2160), "white"), "WEBP"), "4k.webp")
    assert (prepared.width, prepared.height) == (1568, 882)


def test_a_phone_mpo_is_read_as_the_jpeg_it_starts_with() -> None:
    main, depth = photo(4000, 3000), Image.new("RGB", (400, 300), "blue")
    data = encode(main, "MPO", save_all=True, append_images=[depth])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    prepared = prepare_image(data, "IMG_0001.jpg", max_pixels=4_000_000)
    assert (prepared.media_type, prepared.width, prepared.height) == ("image/jpeg", 1568, 1176)
    assert opened(prepared).format == "JPEG"


def test_random_bytes_named_png_are_refused() -> None:
    junk = os.urandom(4096)
    with pytest.raises(MediaError) as caught:
        prepare_image(junk, "photo.png")
    message = str(caught.value)
    assert "photo.png is not an image that can be read" in message
    assert "JPEG, PNG, GIF or WebP" in message


def test_other_image_formats_are_named_in_the_refusal() -> None:
    with pytest.raises(MediaError, match=r"scan\.bmp is a BMP image.*JPEG, PNG, GIF or WebP"):
        prepare_image(encode(Image.new("RGB", (10, 10)), "BMP"), "scan.bmp")
    with pytest.raises(MediaError, match=r"is a TIFF image"):
        prepare_image(encode(Image.new("RGB", (10, 10)), "TIFF"), "scan.tif")


def test_the_bytes_decide_not_the_name() -> None:
    prepared = prepare_image(encode(photo(200, 100), "PNG"), "looks-like.jpg")
    assert prepared.media_type == "image/png"


def test_a_cut_off_image_is_refused() -> None:
    data = encode(photo(800, 600), "JPEG")
    with pytest.raises(MediaError, match=r"could not be decoded"):
        prepare_image(data[: len(data) // 2], "cut.jpg")


def test_a_png_over_the_byte_limit_becomes_a_smaller_jpeg() -> None:
    data = encode(photo(1200, 900, sigma=60), "PNG")
    assert len(data) > 1_000_000
    prepared = prepare_image(data, "noisy.png", max_bytes=300_000)
    assert prepared.media_type == "image/jpeg"
    assert len(prepared.data) <= 300_000
    assert (prepared.width, prepared.height) == (1200, 900)  # quality went first, not size


def test_a_tight_byte_limit_shrinks_the_image() -> None:
    data = encode(photo(1200, 900, sigma=60), "JPEG", quality=95)
    prepared = prepare_image(data, "noisy.jpg", max_bytes=40_000)
    assert len(prepared.data) <= 40_000
    assert prepared.width < 1200
    assert opened(prepared).size == (prepared.width, prepared.height)


def test_a_transparent_png_over_the_limit_is_flattened_on_white() -> None:
    image = photo(1000, 1000, sigma=60).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((1000, 1000)))
    prepared = prepare_image(encode(image, "PNG"), "fade.png", max_bytes=200_000)
    assert prepared.media_type == "image/jpeg"
    assert close(opened(prepared).getpixel((500, 2)), (255, 255, 255), slack=30)


def test_an_impossible_byte_limit_is_refused() -> None:
    with pytest.raises(MediaError, match=r"cannot be made smaller than 100 bytes"):
        prepare_image(encode(photo(400, 300), "JPEG"), "x.jpg", max_bytes=100)


def test_the_default_byte_limit_fits_claude_as_base64() -> None:
    assert (MAX_BYTES + 2) // 3 * 4 <= 5 * 1024 * 1024


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped() -> None:
    data = encode(Image.new("I;16", (50, 50), 32768), "PNG")
    out = opened(prepare_image(data, "depth.png"))
    assert out.convert("L").getpixel((25, 25)) == 128


def test_a_cmyk_jpeg_is_sent_as_rgb() -> None:
    data = encode(Image.new("CMYK", (100, 100), (0, 255, 255, 0)), "JPEG")
    out = opened(prepare_image(data, "print.jpg"))
    assert out.mode == "RGB"
    assert close(out.getpixel((50, 50)), RED)


def test_the_name_shown_is_one_clean_line() -> None:
    prepared = prepare_image(encode(photo(50, 50), "PNG"), "evil\nname\x00.png")
    assert prepared.name == "evil name.png"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_prepared_images_size_is_read_from_its_header(fmt: str) -> None:
    """What the context budget counts an image by, read back from the stored bytes."""
    prepared = prepare_image(encode(photo(3000, 2000), fmt), f"photo.{fmt.lower()}")
    assert dimensions(prepared.data) == (prepared.width, prepared.height) == (1568, 1045)
    progressive = io.BytesIO()
    photo(300, 200).save(progressive, "JPEG", progressive=True)
    assert dimensions(progressive.getvalue()) == (300, 200)
    assert dimensions(prepared.data[:20]) is None  # a header cut short
    assert dimensions(b"GIF89a" + bytes(20)) is None

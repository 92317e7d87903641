"""Real query photos (issue 16): every pixel format a phone, a browser or a scanner saves loads
as upright RGB; images too small or too large are refused with one line that names the limit.
Every file is written by Pillow into tmp_path and read back through load_image (no mocks)."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moonsearch.catalog import MIN_IMAGE_SIDE, TOO_SMALL, ImageError, load_image
from moonsearch.catalog.images import TOO_LARGE
from moonsearch.errors import MoonsearchError
from moonsearch.catalog.images import load_query_image

RED, BLUE, WHITE = (220, 20, 20), (20, 20, 220), (255, 255, 255)


def near(pixel, expected, tolerance=12) -> bool:
    """JPEG moves colours a little; a rotation or a wrong conversion moves them a lot."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: which side ends up on top tells the rotation."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(Image.new("RGB", (width // 2, height), RED), (0, 0))
    return image


def phone_jpeg(path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    halves(64, 32).save(path, quality=95, exif=exif)
    with Image.open(path) as written:  # the tag really is in the file, as a phone writes it
        assert written.size == (64, 32) and written.getexif()[0x0112] == orientation
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A real, tiny PNG whose IHDR claims width x height: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    with warnings.catch_warnings():  # Pillow reads the claim: it warns, or refuses in open()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as claimed:
                assert claimed.size == (width, height)
        except Image.DecompressionBombError as exc:
            assert f"({width * height} pixels)" in str(exc)
    return path


def refused(path: Path) -> ImageError:
    """The ImageError for path, checking that Pillow's bomb warning stayed inside load_image."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as info:
            load_image(path)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "\n" not in str(info.value)
    return info.value


def test_exif_orientation_6_is_turned_upright(tmp_path):
    image = load_image(phone_jpeg(tmp_path / "phone6.jpg", 6))  # shown rotated 90 degrees clockwise
    assert image.mode == "RGB" and image.size == (32, 64)
    assert near(image.getpixel((16, 8)), RED) and near(image.getpixel((16, 56)), BLUE)


def test_exif_orientation_8_is_turned_upright(tmp_path):
    image = load_image(phone_jpeg(tmp_path / "phone8.jpg", 8))  # shown rotated 90 degrees anticlockwise
    assert image.size == (32, 64)
    assert near(image.getpixel((16, 8)), BLUE) and near(image.getpixel((16, 56)), RED)


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", (4, 8), (0, 0, 255, 255)), (0, 0))
    image = load_image(_save(rgba, tmp_path / "cutout.png"))
    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == (0, 0, 255) and image.getpixel((6, 6)) == WHITE


def test_la_png_is_composited_on_white(tmp_path):
    la = Image.new("LA", (8, 8), (0, 0))  # black, fully transparent
    la.paste(Image.new("LA", (8, 4), (0, 255)), (0, 0))  # top half black, opaque
    image = load_image(_save(la, tmp_path / "la.png"))
    assert image.getpixel((3, 1)) == (0, 0, 0) and image.getpixel((3, 6)) == WHITE


def test_palette_png_with_transparent_entry_is_composited_on_white(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.paste(1, (0, 0, 8, 4))
    image = load_image(_save(palette, tmp_path / "p.png", transparency=0))
    assert image.getpixel((3, 1)) == (200, 0, 0) and image.getpixel((3, 6)) == WHITE


def test_rgb_png_with_transparent_colour_key_is_composited_on_white(tmp_path):
    keyed = Image.new("RGB", (8, 8), (0, 255, 0))  # green screen, declared transparent (tRNS)
    keyed.paste(Image.new("RGB", (4, 8), (200, 0, 0)), (0, 0))
    image = load_image(_save(keyed, tmp_path / "key.png", transparency=(0, 255, 0)))
    assert image.getpixel((1, 1)) == (200, 0, 0) and image.getpixel((6, 6)) == WHITE


def test_grayscale_jpeg_loads_as_rgb(tmp_path):
    grey = Image.new("L", (16, 16), 90)
    image = load_image(_save(grey, tmp_path / "grey.jpg", quality=95))
    assert image.mode == "RGB" and image.size == (16, 16) and near(image.getpixel((8, 8)), (90, 90, 90), 3)


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red ink
    cmyk.paste(Image.new("CMYK", (8, 16), (255, 255, 0, 0)), (8, 0))  # blue ink
    image = load_image(_save(cmyk, tmp_path / "print.jpg", quality=95))
    assert image.mode == "RGB"
    assert near(image.getpixel((3, 8)), (255, 0, 0), 20) and near(image.getpixel((12, 8)), (0, 0, 255), 20)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]] * 4, dtype=np.uint16)
    path = _save(Image.fromarray(levels), tmp_path / "scan16.png")
    with Image.open(path) as written:
        assert written.mode == "I;16"
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (4, 4)
    assert [image.getpixel((x, 1)) for x in range(4)] == [(0, 0, 0), (64, 64, 64), (128, 128, 128), WHITE]


def test_16_bit_png_transparent_grey_is_white(tmp_path):
    levels = np.array([[1000, 1000, 0, 0]] * 4, dtype=np.uint16)
    image = load_image(_save(Image.fromarray(levels), tmp_path / "t16.png", transparency=1000))
    assert image.getpixel((0, 0)) == WHITE and image.getpixel((3, 0)) == (0, 0, 0)


def test_32_bit_grey_tiff_holding_16_bit_values_is_scaled(tmp_path):
    levels = np.array([[0, 257 * 128, 65535]] * 3, dtype=np.int32)
    path = _save(Image.fromarray(levels), tmp_path / "scan32.tif")
    with Image.open(path) as written:
        assert written.mode == "I"
    image = load_image(path)
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


def test_palette_gif_loads_its_colours(tmp_path):
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([255, 255, 255, 30, 120, 40] + [0] * 762)
    image = load_image(_save(palette, tmp_path / "p.gif"))
    assert image.mode == "RGB" and image.getpixel((4, 4)) == (30, 120, 40)


def test_1_bit_image_loads_black_and_white(tmp_path):
    bits = Image.new("1", (8, 8), 1)
    bits.paste(0, (0, 0, 4, 8))
    path = _save(bits, tmp_path / "fax.png")
    with Image.open(path) as written:
        assert written.mode == "1"
    image = load_image(path)
    assert image.mode == "RGB" and image.getpixel((1, 1)) == (0, 0, 0) and image.getpixel((6, 1)) == WHITE


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "spin.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as written:
        assert written.n_frames == 3
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (10, 10) and image.getpixel((5, 5)) == (255, 0, 0)


def test_1x1_image_is_too_small(tmp_path):
    path = _save(Image.new("RGB", (1, 1), RED), tmp_path / "pixel.png")
    error = refused(path)
    assert error.reason == TOO_SMALL
    assert str(error) == (
        f"image too small (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels needed): {path} (1x1 pixels)"
    )


def test_thin_line_is_too_small_and_the_minimum_loads(tmp_path):
    line = _save(Image.new("RGB", (300, MIN_IMAGE_SIDE - 1), RED), tmp_path / "divider.png")
    assert refused(line).reason == TOO_SMALL
    smallest = load_image(_save(Image.new("RGB", (MIN_IMAGE_SIDE,) * 2, RED), tmp_path / "swatch.png"))
    assert smallest.size == (MIN_IMAGE_SIDE, MIN_IMAGE_SIDE) and smallest.getpixel((0, 0)) == RED


def test_bomb_over_twice_the_limit_names_the_limit_without_warning(tmp_path):
    path = png_claiming(tmp_path / "bomb.png", 20_000, 20_000)  # Pillow itself refuses this in open()
    error = refused(path)
    assert error.reason == TOO_LARGE
    assert str(error) == f"image too large: {path} (400000000 pixels; the limit is {Image.MAX_IMAGE_PIXELS})"


def test_bomb_just_over_the_limit_names_the_limit_without_warning(tmp_path):
    path = png_claiming(tmp_path / "big.png", 10_000, 10_000)  # Pillow would only warn here
    error = refused(path)
    assert error.reason == TOO_LARGE
    assert str(error) == (
        f"image too large: {path} (10000x10000 = 100000000 pixels; the limit is {Image.MAX_IMAGE_PIXELS})"
    )


def test_query_with_tiny_photo_is_a_one_line_error_naming_the_minimum(tmp_path):
    path = _save(Image.new("RGB", (1, 1), RED), tmp_path / "pixel.png")
    with pytest.raises(MoonsearchError) as info:
        load_query_image(str(path))
    limit = f"at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels needed"
    assert str(info.value) == f"cannot use query image {path}: image too small ({limit}) (1x1 pixels)"


def test_query_with_bomb_photo_is_a_one_line_error_without_warning(tmp_path):
    path = png_claiming(tmp_path / "bomb.png", 20_000, 20_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(MoonsearchError) as info:
            load_query_image(path)
    assert str(info.value) == (f"cannot use query image {path}: image too large "
                               f"(400000000 pixels; the limit is {Image.MAX_IMAGE_PIXELS})")
    assert "\n" not in str(info.value)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path

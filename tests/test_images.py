"""Image loading on real files made with Pillow (no mocks)."""

from __future__ import annotations

import random
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

from moonsearch.catalog import ImageError, first_image, load_image


def save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG claiming huge dimensions: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def reason_of(path) -> str:
    with pytest.raises(ImageError) as info:
        load_image(path)
    return info.value.reason


def test_good_jpeg_is_decoded_rgb(tmp_path):
    path = save(tmp_path / "a.jpg", Image.new("RGB", (32, 24), (10, 200, 30)), quality=95)
    image = load_image(path)
    path.unlink()  # fully decoded: pixels stay readable without the file
    assert image.mode == "RGB" and image.size == (32, 24)
    r, g, b = image.getpixel((5, 5))
    assert abs(r - 10) < 8 and abs(g - 200) < 8 and abs(b - 30) < 8


def test_png_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (255, 0, 0, 128))
    image = load_image(save(tmp_path / "a.png", rgba))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (255, 0, 0)
    r, g, b = image.getpixel((2, 2))
    assert r == 255 and 120 < g < 135 and g == b  # half red over white is pink


def test_palette_with_transparency_and_grey_and_cmyk(tmp_path):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((3, 3), 1)
    palette_path = save(tmp_path / "p.png", palette, transparency=0)
    image = load_image(palette_path)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((3, 3)) == (0, 0, 255)

    grey = load_image(save(tmp_path / "g.png", Image.new("L", (3, 3), 77)))
    assert grey.mode == "RGB" and grey.getpixel((1, 1)) == (77, 77, 77)

    cmyk = load_image(save(tmp_path / "c.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0))))
    assert cmyk.mode == "RGB" and cmyk.getpixel((4, 4))[0] > 200


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = save(tmp_path / "r.jpg", Image.new("RGB", (40, 20), "white"), exif=exif)
    assert load_image(path).size == (20, 40)


def test_missing_file_and_directory(tmp_path):
    assert reason_of(tmp_path / "nope.jpg") == "missing file"
    assert reason_of(tmp_path) == "missing file"
    with pytest.raises(ImageError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_truncated_jpeg_and_png_are_corrupt(tmp_path):
    noise = Image.effect_noise((64, 64), 60).convert("RGB")
    for name in ("t.jpg", "t.png"):
        data = (save(tmp_path / ("full_" + name), noise)).read_bytes()
        truncated = tmp_path / name
        truncated.write_bytes(data[: len(data) // 2])
        assert reason_of(truncated) == "corrupt or truncated image"


def test_random_bytes_and_empty_file_are_corrupt(tmp_path):
    rng = random.Random(1234)
    garbage = tmp_path / "g.jpg"
    garbage.write_bytes(bytes([0x80 | rng.randrange(128)]) + rng.randbytes(4095))
    assert reason_of(garbage) == "corrupt or truncated image"
    headed = tmp_path / "h.jpg"
    headed.write_bytes(b"\xff\xd8\xff\xe0" + rng.randbytes(2000))  # JPEG marker, then noise
    assert reason_of(headed) == "corrupt or truncated image"
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    assert reason_of(empty) == "corrupt or truncated image"


def test_text_and_foreign_files_are_unsupported(tmp_path):
    text = tmp_path / "t.jpg"
    text.write_text("<html><body>404 Not Found</body></html>\n")
    assert reason_of(text) == "unsupported format"
    pdf = tmp_path / "d.png"
    pdf.write_bytes(b"%PDF-1.7\n\x80\x81\x82 binary stream")
    assert reason_of(pdf) == "unsupported format"


@pytest.mark.parametrize(
    "value",
    ["https://cdn.example.com/a.jpg", "http://x/y.png", "s3://bucket/k.jpg", Path("https://cdn.example.com/a.jpg")],
)
def test_urls_are_not_local_files(value):
    with pytest.raises(ImageError) as info:
        load_image(value)
    assert info.value.reason == "not a local file (URL)"


def test_decompression_bombs_are_too_large(tmp_path):
    over_twice = png_header_only(tmp_path / "huge.png", 20_000, 20_000)
    assert reason_of(over_twice) == "image too large"
    just_over = png_header_only(tmp_path / "big.png", 10_000, 10_000)  # Pillow only warns here
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the warning must stay inside load_image
        assert reason_of(just_over) == "image too large"


def test_first_image(tmp_path):
    good = save(tmp_path / "ok.png", Image.new("RGB", (5, 5), "blue"))
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 cut")
    missing = tmp_path / "missing.jpg"

    assert first_image([]) == (None, None)
    image, reason = first_image([missing, corrupt, good])
    assert reason is None and image.size == (5, 5) and image.getpixel((0, 0)) == (0, 0, 255)
    assert first_image([missing, corrupt]) == (None, "missing file")
    assert first_image([corrupt, missing]) == (None, "corrupt or truncated image")

"""camscope.io: safe image loading, input collection, preprocessing, map resizing."""

from __future__ import annotations

import http.server
import io
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from local_http import local_server
from PIL import Image

from camscope.errors import CamscopeError, ImageLoadError
from camscope.io import (
    DEFAULT_MAX_PIXELS,
    load_image,
    load_image_bytes,
)

REPO = Path(__file__).resolve().parents[1]


def png_bytes(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


# ---------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="not found") as info:
        load_image(path)
    assert info.value.source == str(path)
    assert isinstance(info.value, CamscopeError)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, I am text\n" * 20)
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(path)


def test_truncated_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = png_bytes(noisy)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="corrupt") as info:
        load_image(path)
    assert "re-" in info.value.reason  # says what to do


def test_corrupt_bytes_after_valid_header(tmp_path: Path) -> None:
    data = bytearray(png_bytes(Image.new("RGB", (32, 32), (1, 2, 3))))
    data[60:] = b"\x00" * (len(data) - 60)
    path = tmp_path / "zeroed.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(path)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd"])
def test_unsupported_url_scheme(url: str) -> None:
    with pytest.raises(ImageLoadError, match="unsupported URL scheme"):
        load_image(url)


# ---------------------------------------------------------------------------- pixel cap


def test_pixel_cap(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (100, 50), (9, 9, 9)).save(path)
    assert load_image(path, max_pixels=5000).size == (100, 50)
    with pytest.raises(ImageLoadError, match="--max-pixels") as info:
        load_image(path, max_pixels=4999)
    assert "5000" in info.value.reason


def test_pixel_cap_checked_before_decoding(tmp_path: Path) -> None:
    # The header claims 400 x 400 but the pixel data is cut off: the cap must fire first.
    data = png_bytes(Image.new("RGB", (400, 400), (5, 5, 5)))
    path = tmp_path / "bomb.png"
    path.write_bytes(data[:80])
    with pytest.raises(ImageLoadError, match="--max-pixels"):
        load_image(path, max_pixels=1000)
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(path)


def test_cap_above_pil_default_is_honoured(tmp_path: Path) -> None:
    # A user cap larger than PIL's global limit must not trip PIL's own bomb check.
    saved = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "wide.png"
    Image.new("L", (300, 10)).save(path)
    try:
        Image.MAX_IMAGE_PIXELS = 1000  # PIL would warn at 1000 and refuse above 2000
        assert load_image(path, max_pixels=10_000).size == (300, 10)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert saved == Image.MAX_IMAGE_PIXELS


def _png_claiming(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header (with a correct CRC) claims ``width x height``."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts at byte 16
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("cap", [100, 300])
def test_pixel_cap_message_names_the_real_limit(tmp_path: Path, cap: int) -> None:
    # 400 pixels: above 2 x 100 PIL raises its bomb error, between 300 and 600 it only warns;
    # both used to quote PIL's doubled limit ("limit of 200").
    path = tmp_path / "twenty.png"
    Image.new("L", (20, 20)).save(path)
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=cap)
    assert f"limit of {cap} (--max-pixels)" in info.value.reason
    assert str(2 * cap) not in info.value.reason and "400" in info.value.reason


def test_default_cap_message_quotes_the_default(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming(20_000, 20_000))  # 400 MP: over twice PIL's limit
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert f"limit of {DEFAULT_MAX_PIXELS} (--max-pixels)" in info.value.reason
    assert str(2 * DEFAULT_MAX_PIXELS) not in info.value.reason


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A 16 x 16 JPEG whose frame header claims ``width x height``, cut 16 bytes into its scan
    and closed with an end-of-image marker: libjpeg fills the rest with grey, silently."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, height, width)
    scan = data.find(b"\xff\xda")
    header_end = scan + 2 + int.from_bytes(data[scan + 2 : scan + 4], "big")
    return bytes(data[: header_end + 16]) + b"\xff\xd9"


def test_jpeg_too_short_for_its_size_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_jpeg_claiming(9000, 9000))
    assert path.stat().st_size < 700  # and 81 MP (243 MB decoded) claimed
    with pytest.raises(ImageLoadError, match="truncated JPEG") as info:
        load_image(path)
    assert "re-export or re-download" in info.value.reason
    # The refusal comes before decoding: a fresh process stays far below the 243 MB picture.
    # (VmHWM, not ru_maxrss: the latter keeps the forking test process's peak across exec)
    code = (
        "from camscope.io import load_image\n"
        "from camscope.errors import ImageLoadError\n"
        "try:\n"
        f"    load_image({str(path)!r})\n"
        "except ImageLoadError:\n"
        "    pass\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "print(int(status.split()[0]) // 1024)\n"
    )
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 200  # MiB


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("RGB", {}),
        ("RGB", {"progressive": True}),
        ("L", {"quality": 10}),
        ("RGB", {"subsampling": 0}),
    ],
)
def test_intact_flat_jpegs_are_not_called_truncated(
    tmp_path: Path, mode: str, options: dict
) -> None:
    # A flat picture is the most compressible content: the bound must still hold.
    path = tmp_path / "flat.jpg"
    Image.new(mode, (1200, 900), 128 if mode == "L" else (120, 130, 140)).save(path, **options)
    assert load_image(path).size == (1200, 900)


# ---------------------------------------------------------------------------- modes


def test_16bit_rescaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    out = pixels(load_image(path))
    # value / 257: 0, 1, 128, 255 (clipping would give 0, 255, 255, 255)
    expected = np.array([0, 1, 128, 255], dtype=np.uint8)
    assert out.shape == (1, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[0, :, channel], expected)


@pytest.mark.parametrize(("mode", "dtype"), [("I;16", "<u2"), ("I;16B", ">u2"), ("I", "<i4")])
def test_16bit_modes_in_tiff(tmp_path: Path, mode: str, dtype: str) -> None:
    raw = np.array([[0, 514, 65535]], dtype=dtype).tobytes()
    image = Image.frombytes(mode, (3, 1), raw)
    assert image.mode == mode
    path = tmp_path / "deep.tif"
    image.save(path)
    np.testing.assert_array_equal(pixels(load_image(path))[0, :, 1], [0, 2, 255])


def test_float_image(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    path = tmp_path / "float.tif"
    image.save(path)
    np.testing.assert_array_equal(pixels(load_image(path))[0, :, 0], [0, 128, 255])


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    Image.new("L", (3, 2), 77).save(tmp_path / "g.png")
    assert (pixels(load_image(tmp_path / "g.png")) == 77).all()
    bw = Image.new("1", (2, 1), 0)
    bw.putpixel((1, 0), 1)
    bw.save(tmp_path / "bw.png")
    np.testing.assert_array_equal(
        pixels(load_image(tmp_path / "bw.png")), [[[0, 0, 0], [255, 255, 255]]]
    )


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    image.putpixel((1, 0), (10, 20, 30, 0))  # fully transparent
    image.save(tmp_path / "a.png")
    out = pixels(load_image(tmp_path / "a.png"))
    # 255 * 128/255 + 255 * 127/255 = 255 ; 0 * 128/255 + 255 * 127/255 = 127
    np.testing.assert_array_equal(out, [[[255, 127, 127], [255, 255, 255]]])


def test_la_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (100, 255))
    image.putpixel((1, 0), (100, 0))
    image.save(tmp_path / "la.png")
    np.testing.assert_array_equal(
        pixels(load_image(tmp_path / "la.png")), [[[100, 100, 100], [255, 255, 255]]]
    )


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(
        pixels(load_image(tmp_path / "p.png")), [[[255, 255, 255], [0, 0, 255]]]
    )
    opaque = Image.new("P", (1, 1))
    opaque.putpalette([7, 8, 9] + [0] * 765)
    opaque.save(tmp_path / "q.png")
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "q.png")), [[[7, 8, 9]]])


def test_cmyk(tmp_path: Path) -> None:
    image = Image.new("CMYK", (2, 1))
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 0))
    image.save(tmp_path / "c.tif")
    np.testing.assert_array_equal(
        pixels(load_image(tmp_path / "c.tif")), [[[255, 255, 255], [0, 255, 255]]]
    )


def test_exif_orientation_6(tmp_path: Path) -> None:
    # Stored 4 wide x 2 high with a red top-left corner; orientation 6 = rotate 90° clockwise.
    stored = np.zeros((2, 4, 3), dtype=np.uint8)
    stored[0, 0] = (255, 0, 0)
    stored[1, 3] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.png"
    Image.fromarray(stored).save(path, exif=exif)
    out = load_image(path)
    assert out.size == (2, 4)  # width and height swapped
    np.testing.assert_array_equal(pixels(out), np.rot90(stored, k=-1))
    assert tuple(pixels(out)[0, 1]) == (255, 0, 0)  # top-left went to the top-right


# ---------------------------------------------------------------------------- URLs

PNG_OK = png_bytes(Image.new("RGB", (3, 2), (40, 50, 60)))


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path == "/ok.png":
            self._send(PNG_OK)
        elif self.path == "/big-declared":
            self._send(b"x" * 5000)
        elif self.path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body runs until the connection closes
            for _ in range(10):
                self.wfile.write(b"y" * 1000)
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(PNG_OK)
        elif self.path == "/text":
            self._send(b"<html>not a picture</html>")
        elif self.path == "/bomb.jpg":
            self._send(_jpeg_claiming(9000, 9000))
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with local_server(_Handler) as url:
        yield url


def test_url_ok(server: str) -> None:
    image = load_image(server + "/ok.png", timeout=5)
    assert image.size == (3, 2)
    assert (pixels(image) == (40, 50, 60)).all()


def test_url_404(server: str) -> None:
    with pytest.raises(ImageLoadError, match="404"):
        load_image(server + "/missing.png", timeout=5)


@pytest.mark.parametrize("route", ["/big-declared", "/big-undeclared"])
def test_url_too_big(server: str, route: str) -> None:
    with pytest.raises(ImageLoadError, match="limit of 2000 bytes"):
        load_image(server + route, timeout=5, max_bytes=2000)


def test_url_timeout(server: str) -> None:
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"no answer within 0\.3 s"):
        load_image(server + "/slow", timeout=0.3)
    assert time.monotonic() - start < 1.4


def test_truncated_jpeg_over_http_and_upload_is_refused(server: str) -> None:
    with pytest.raises(ImageLoadError, match="truncated JPEG"):
        load_image(server + "/bomb.jpg")
    with pytest.raises(ImageLoadError, match="truncated JPEG"):
        load_image_bytes(_jpeg_claiming(9000, 9000), "upload.jpg")


def test_url_not_an_image(server: str) -> None:
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(server + "/text", timeout=5)


def test_url_unreachable() -> None:
    # Port 9 on localhost (discard) is closed on test machines: connection refused.
    with pytest.raises(ImageLoadError, match="cannot reach"):
        load_image("http://127.0.0.1:9/x.png", timeout=2)


def test_load_image_bytes_decodes_like_a_file(tmp_path: Path) -> None:
    """Uploads decode exactly as files do (orientation, mode conversion, caps, errors)."""
    rgba = Image.new("RGBA", (5, 4), (10, 20, 30, 0))
    data = png_bytes(rgba)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert np.array_equal(pixels(load_image_bytes(data, "a.png")), pixels(load_image(path)))
    with pytest.raises(ImageLoadError, match="empty"):
        load_image_bytes(b"", "upload")
    with pytest.raises(ImageLoadError, match="not an image") as info:
        load_image_bytes(b"plain text", "notes.jpg")
    assert info.value.source == "notes.jpg"
    with pytest.raises(ImageLoadError, match="max-pixels"):
        load_image_bytes(data, "a.png", max_pixels=10)


def test_a_mask_that_is_no_picture_is_named_without_python_internals(tmp_path: Path) -> None:
    from camscope.io.masks import load_mask

    path = tmp_path / "region.png"
    path.write_bytes(b"not a picture")
    with pytest.raises(ImageLoadError, match=r"region\.png: not a picture PIL can read") as err:
        load_mask(path, (8, 8))
    assert "BytesIO" not in str(err.value) and " at 0x" not in str(err.value)
    with pytest.raises(ImageLoadError, match="upload: not a picture PIL can read") as err:
        load_mask(b"not a picture", (8, 8), name="upload")
    assert "BytesIO" not in str(err.value)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with one empty data chunk (readers
    that check the size refuse it before decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_a_mask_past_pils_own_pixel_limit_is_an_image_load_error(tmp_path: Path) -> None:
    """Over twice PIL.Image.MAX_IMAGE_PIXELS, PIL's open raises DecompressionBombError, which is
    not an OSError: it was an internal error for a region and an annotation mask."""
    from camscope.data.dataset import Sample
    from camscope.io.masks import load_mask

    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(20_000, 20_000))
    with pytest.raises(ImageLoadError, match=r"huge\.png: the mask has too many pixels"):
        load_mask(path, (8, 8))
    sample = Sample(id="x", source=str(path), mask=path)
    with pytest.raises(ImageLoadError, match=r"object mask cannot be read"):
        sample.read_mask((8, 8))

"""camscope.io leaves PIL's process-wide settings alone: no writes of ``Image.MAX_IMAGE_PIXELS``
or ``ImageFile.LOAD_TRUNCATED_IMAGES``, no warning filters, no global lock (issue 20, item 6)."""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from module_writes import recorded_writes
from PIL import Image, ImageFile

from camscope.errors import ImageLoadError
from camscope.io import decode, load_image, load_image_bytes


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture()
def watched() -> Iterator[list[str]]:
    """Every write of PIL's settings and of the warnings module's filters during the test."""
    filters = list(warnings.filters)
    with recorded_writes(Image, ImageFile, warnings) as written:
        yield written
    assert warnings.filters == filters


def bad_and_good_inputs() -> list[tuple[bytes, str]]:
    png = encoded(noise(64, 64), "PNG")
    return [
        (png, "a.png"),
        (png[: len(png) // 2], "cut.png"),
        (encoded(noise(40, 30), "JPEG"), "a.jpg"),
        (encoded(noise(20, 20), "TIFF"), "a.tif"),
        (encoded(noise(20, 20), "WEBP"), "a.webp"),
        (encoded(noise(9, 9).convert("P"), "GIF"), "a.gif"),
        (b"not an image at all", "text.png"),
    ]


def test_decoding_writes_no_pil_setting_and_no_warning_filter(watched: list[str]) -> None:
    results = []
    for data, name in bad_and_good_inputs():
        for cap in (10, decode.DEFAULT_MAX_PIXELS):
            try:
                results.append(load_image_bytes(data, name, max_pixels=cap).size)
            except ImageLoadError as err:
                results.append(err.reason)
    threads = [
        threading.Thread(target=lambda d=d, n=n: load_image_bytes(d, n))
        for d, n in bad_and_good_inputs()[:1] * 4
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert (64, 64) in results and any("corrupt" in r for r in results if isinstance(r, str))
    pil = [w for w in watched if "MAX_IMAGE_PIXELS" in w or "LOAD_TRUNCATED" in w]
    assert pil == [] and not [w for w in watched if w.startswith("warnings.")], watched


def test_the_monitor_sees_the_writes_it_is_for(watched: list[str]) -> None:
    # The premise of the test above: a write of a PIL setting is recorded.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = saved
    with warnings.catch_warnings():
        pass
    assert "PIL.Image.MAX_IMAGE_PIXELS" in watched and "warnings.filters" in watched


def test_a_cap_above_twice_pils_limit_leaves_the_limit_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: list[str]
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the application's choice
    path = tmp_path / "wide.png"
    noise(300, 20).save(path)  # 6,000 pixels: PIL's Image.open would refuse above 2,000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # the premise
    assert load_image(path, max_pixels=10_000).size == (300, 20)
    assert Image.MAX_IMAGE_PIXELS == 1000
    assert [w for w in watched if w.endswith("MAX_IMAGE_PIXELS")] == ["PIL.Image.MAX_IMAGE_PIXELS"]


def test_readers_that_check_pils_limit_themselves_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's TIFF reader checks its tile size against the global limit while loading.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = encoded(noise(30, 30), "TIFF")  # 900 pixels: over twice the limit
    with pytest.raises(ImageLoadError, match=r"MAX_IMAGE_PIXELS = 100") as info:
        load_image_bytes(data, "big.tif", max_pixels=10_000)
    assert "900 pixels" in info.value.reason
    with pytest.raises(ImageLoadError, match="--max-pixels"):  # our own cap still comes first
        load_image_bytes(data, "big.tif", max_pixels=500)
    assert load_image_bytes(encoded(noise(30, 30), "PNG"), max_pixels=10_000).size == (30, 30)


def test_decodes_run_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decode held half-way (in the RGB conversion) does not stop another thread's decode: no
    lock is held for the whole decode."""
    inside, release = threading.Event(), threading.Event()
    real = decode.to_rgb_and_grey

    def held(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
        if image.size == (7, 7):
            inside.set()
            release.wait(30)
        return real(image)

    monkeypatch.setattr(decode, "to_rgb_and_grey", held)
    slow_done: list[tuple[int, int]] = []
    slow = threading.Thread(
        target=lambda: slow_done.append(load_image_bytes(encoded(noise(7, 7), "PNG")).size)
    )
    slow.start()
    try:
        assert inside.wait(30)
        others: list[tuple[int, int]] = []
        fast = [
            threading.Thread(
                target=lambda: others.append(load_image_bytes(encoded(noise(5, 4), "PNG")).size)
            )
            for _ in range(2)
        ]
        for t in fast:
            t.start()
        for t in fast:
            t.join(20)
        assert others == [(5, 4), (5, 4)]  # finished while the first decode is still held
        assert not slow_done
    finally:
        release.set()
        slow.join(30)
    assert slow_done == [(7, 7)]


@pytest.fixture()
def truncation_flag_on() -> Iterator[None]:
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as some libraries do, process-wide
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_truncation_flag_switched_on_elsewhere_refuses_pil_decodes(
    tmp_path: Path, truncation_flag_on: None
) -> None:
    data = encoded(noise(64, 64), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with Image.open(cut) as lenient:  # the premise: PIL alone fills the missing half in
        assert lenient.load() is not None
    for source in (cut, data):
        with pytest.raises(ImageLoadError, match="LOAD_TRUNCATED_IMAGES = False") as info:
            load_image(source) if isinstance(source, Path) else load_image_bytes(source)
        assert "truncated" in info.value.reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # refused, not switched off behind its back
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert load_image_bytes(data).size == (64, 64)
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(cut)

"""Explanations written as files: overlays, grids and ``.npy`` maps per image (``camscope explain``).

:class:`PictureWriter` draws and encodes each image's :class:`~.pictures.ImagePlan` in a small
thread pool, so that PNG encoding (zlib and PIL's encoders release the GIL) runs while the main
thread explains the next batch. A file that cannot be written (a folder in the way, a full disk)
fails that image, with the file named in its record; the other images go on.
Every file is written through :func:`camscope.outputs.write_atomic`: a picture is there whole or
not at all, also after a kill.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..outputs import write_picture
from .plan import IMAGE_FORMATS, ImagePlan, PictureOptions

if TYPE_CHECKING:
    from PIL import Image

_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    # zlib level 1: 3-4x faster than PIL's default 6 on photos, files about 10-15 % larger.
    "png": {"image_format": "PNG", "compress_level": 1},
    "jpg": {"image_format": "JPEG", "quality": 90},
    "webp": {"image_format": "WEBP", "quality": 90, "method": 4},
}


def _save(picture: Image.Image, path: Path, image_format: str) -> None:
    write_picture(path, picture, **_SAVE_OPTIONS[image_format])


def render(
    plan: ImagePlan, out: Path, options: PictureOptions
) -> tuple[list[str], str | None, float]:
    """Draw and write one image's files; returns the file names written, an error or None, and
    the seconds it took."""
    from PIL import Image

    from .. import io, viz

    began = time.perf_counter()
    written: list[str] = []
    target = out
    size = (plan.display.height, plan.display.width)
    try:
        for picture in plan.pictures:
            target = out / picture.name
            if picture.heat is not None:
                heat = io.resize_map(picture.heat, size)
                drawn = viz.overlay(plan.display, heat, options.colormap, options.alpha)
                del heat
            else:
                assert picture.rgb is not None
                drawn = Image.fromarray(picture.rgb, mode="RGB")
                if drawn.size != plan.display.size:
                    drawn = drawn.resize(plan.display.size, Image.Resampling.BILINEAR)
            if picture.boxes:
                drawn = viz.draw_boxes(drawn, picture.boxes, picture.highlight)
            _save(drawn, target, IMAGE_FORMATS[options.image_format])
            written.append(picture.name)
        for npy in plan.npys:
            target = out / npy.name
            array = npy.array if npy.size is None else io.resize_map(npy.array, npy.size)
            io.save_npy(target, array)
            written.append(npy.name)
        if plan.grid_name is not None:
            target = out / plan.grid_name
            grid = viz.compose_grid(
                plan.grid_picture or plan.display,
                plan.grid_rows,
                colormap=options.colormap,
                alpha=options.alpha,
                title=plan.grid_title,
                heat_legend=plan.heat_legend,
                max_columns=options.max_columns,
            )
            _save(grid, target, IMAGE_FORMATS[options.image_format])
            written.append(plan.grid_name)
    except OSError as err:
        reason = err.strerror or str(err)
        if target.is_dir():
            reason = "a folder is in the way"
        error = f"cannot write {target.name!r} ({reason}); remove it or choose another --out"
        return written, error, time.perf_counter() - began
    return written, None, time.perf_counter() - began


class PictureWriter:
    """Draws and writes :class:`ImagePlan` s in worker threads, keeping records in input order.

    ``submit`` returns at once (it waits only when ``2 * workers`` images are already queued, so
    memory stays bounded); ``collect`` fills in the records of finished images and returns those
    that failed; ``close`` waits for everything.
    """

    def __init__(self, out: Path, options: PictureOptions, workers: int | None = None) -> None:
        self.out = out
        self.options = options
        count = workers or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="camscope-write")
        self._limit = 2 * count
        self.failed: list[dict[str, Any]] = []
        self._pending: deque[tuple[dict[str, Any], Future[tuple[list[str], str | None, float]]]]
        self._pending = deque()

    def submit(self, plan: ImagePlan) -> dict[str, Any]:
        """Queue one image's files; returns its record (files and error filled in later)."""
        while len(self._pending) >= self._limit:
            self._pending[0][1].result()
            self.failed.extend(self.collect())
        future = self._pool.submit(render, plan, self.out, self.options)
        self._pending.append((plan.record, future))
        return plan.record

    def collect(self, wait: bool = False) -> list[dict[str, Any]]:
        """Fill in the records of finished images (all of them with ``wait``); returns the
        records of images that failed to write (also those found while ``submit`` waited)."""
        failed, self.failed = self.failed, []
        while self._pending and (wait or self._pending[0][1].done()):
            record, future = self._pending.popleft()
            files, error, seconds = future.result()
            record["files"] = files + record["files"]
            record["seconds"] = round(record.get("seconds", 0.0) + seconds, 4)
            if error is not None:
                record["error"] = error
                failed.append(record)
        return failed

    def close(self) -> list[dict[str, Any]]:
        """Wait for every queued image; returns the records of those that failed to write."""
        try:
            return self.collect(wait=True)
        finally:
            self._pool.shutdown(wait=True)

"""Plain image arguments (``explain``, ``predict``, ``adversarial``): files, folders, URLs or the
demo images, as unlabelled :class:`~camscope.data.dataset.Sample` records with unique, safe
file-name stems for their outputs (:func:`open_images`); folders expanded into image files
(:func:`collect_inputs`); the demo photos (:func:`demo_images`)."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageLoadError, UsageError
from .dataset import LabelledData, Sample

log = logging.getLogger(__name__)

DEMO_IMAGES = ("chelsea", "coffee", "rocket", "astronaut")


# Characters no file name may hold on common systems (path separators, Windows' reserved set).
_FORBIDDEN = re.compile(r'[/\\<>:"|?*]')
_STEM_BYTES = 120  # leaves room for ".guided-gradcam.999.webp" under the usual 255-byte limit


def _safe_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category[0] == "C" or category in ("Zl", "Zp"):  # control, format, unassigned, newlines
        return "_"
    return "_" if _FORBIDDEN.match(ch) else ch


def stem_of(source: str) -> str:
    """File-name stem for an input path or URL: ``/a/b/cat.01.jpg`` -> ``cat.01``.

    Letters of every script and spaces are kept (``café latte.jpg`` -> ``café latte``, in Unicode
    NFC form); path separators, characters Windows forbids and control characters (escape codes,
    newlines) become ``_``; URLs are percent-decoded first; leading/trailing dots and spaces are
    dropped and the stem is cut to 120 bytes of UTF-8.

    >>> stem_of("https://h/p/dog%20one.png?x=1"), stem_of("/x/a\\x1b[31m.png")
    ('dog one', 'a_[31m')
    """
    tail = source.split("?", 1)[0].split("#", 1)[0] if "://" in source else source
    tail = tail.rstrip("/\\")
    name = re.split(r"[/\\]", tail)[-1] if tail else ""
    if "://" in source:
        name = urllib.parse.unquote(name)
    lower = name.lower()
    if lower.endswith(".nii.gz"):
        name = name[: -len(".nii.gz")]
    elif "." in name.lstrip("."):
        name = name.rsplit(".", 1)[0]
    name = unicodedata.normalize("NFC", name)
    stem = "".join(_safe_char(ch) for ch in name).strip(". ")
    encoded = stem.encode("utf-8")[:_STEM_BYTES]
    stem = encoded.decode("utf-8", errors="ignore").strip(". ")
    return stem or "image"


def unique_stems(stems: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """Make stems unique in order: ``cat, cat, cat-2`` -> ``cat, cat-2, cat-2-2``; none equal
    (ignoring case, as file systems may) to one in ``taken`` (the stems an earlier run gave out).

    >>> unique_stems(["a_b", "a_b", "A_B"], taken=["a_b-2"])
    ['a_b', 'a_b-3', 'A_B-4']
    """
    used: set[str] = {stem.casefold() for stem in taken}
    result: list[str] = []
    for stem in stems:
        candidate, n = stem, 2
        while candidate.casefold() in used:
            candidate = f"{stem}-{n}"
            n += 1
        used.add(candidate.casefold())
        result.append(candidate)
    return result


def with_stems(samples: Sequence[Sample]) -> list[Sample]:
    """``samples``, each given the unique stem of its source (:func:`stem_of`, :func:`unique_stems`)."""
    stems = unique_stems([stem_of(s.source) for s in samples])
    return [replace(s, stem=stem) for s, stem in zip(samples, stems)]


_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_names(names: Sequence[str]) -> dict[str, str]:
    """Portable file names for free-form names (class and layer names in report files): ASCII
    letters, digits and ``. _ -``, at most 80 characters, made unique as :func:`unique_stems` does.

    >>> safe_names(["cat", "a/b", "a b", "..", "Cat", "café"])
    {'cat': 'cat', 'a/b': 'a_b', 'a b': 'a_b-2', '..': 'class', 'Cat': 'Cat-2', 'café': 'cafe'}
    """
    stems = []
    for name in names:
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        stems.append(_ASCII_UNSAFE.sub("_", ascii_name).strip("._")[:80] or "class")
    return dict(zip(names, unique_stems(stems)))


def open_images(images: Sequence[str]) -> LabelledData:
    """Command-line image arguments (files, folders, URLs) or, when none, the demo images."""
    from .. import io

    if not images:
        demo = [Sample(f"demo:{n}", f"demo:{n}", image=image, stem=n) for n, image in demo_images()]
        return LabelledData(demo, description="demo images")
    sources = collect_inputs(list(images))
    if not sources:
        raise UsageError(
            f"no images found in {', '.join(map(repr, images))}; image files end in "
            f"{', '.join(io.IMAGE_EXTENSIONS)}"
        )
    return LabelledData(with_stems([Sample(s, s) for s in sources]), description=", ".join(images))


def collect_inputs(items: Sequence[str]) -> list[str]:
    """Expand folders into the image files below them; keep everything else as given.

    Folders are walked recursively (symlinked folders are not followed); their files whose
    extension is in :data:`camscope.io.IMAGE_EXTENSIONS` (any case; ``.nii.gz`` counts) are
    added in sorted path order. Files and ``http(s)`` URLs are kept as given, also files that do
    not exist (``load_image`` then reports them). Repeats (the same file reached twice) are
    dropped; the first occurrence wins.

    >>> collect_inputs(["https://example.com/a.jpg", "https://example.com/a.jpg"])
    ['https://example.com/a.jpg']
    """
    from ..io.decode import IMAGE_EXTENSIONS, is_url

    found: dict[str, str] = {}  # the normalised path -> the first item that names it
    for raw in items:
        item = str(raw)
        paths = [item]
        if not is_url(item) and os.path.isdir(item):
            paths = images_below(item)
            if not paths:
                log.warning("folder %s holds no images (%s)", item, ", ".join(IMAGE_EXTENSIONS))
        for path in paths:
            found.setdefault(
                path if is_url(path) else os.path.normcase(os.path.abspath(path)), path
            )
    return list(found.values())


def images_below(folder: str | Path, follow_links: bool = False) -> list[str]:
    """Every image file below ``folder`` (:func:`camscope.io.decode.has_image_extension`), in
    sorted path order; symlinked folders are followed only with ``follow_links``."""
    from ..io.decode import has_image_extension

    found: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=follow_links):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in files if has_image_extension(f))
    return sorted(found)


def demo_images() -> list[tuple[str, Image.Image]]:
    """The demo photos shipped inside scikit-image (no download): chelsea (a cat), coffee,
    rocket, astronaut, as ``[(name, RGB image)]``.
    """
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - scikit-image is a dependency
        raise ImageLoadError("demo", "scikit-image is needed for the demo images") from err
    out: list[tuple[str, Image.Image]] = []
    for name in DEMO_IMAGES:
        try:
            array = getattr(data, name)()
        except Exception as err:
            raise ImageLoadError(
                name, f"scikit-image could not provide this demo image ({err}); reinstall it"
            ) from err
        out.append((name, Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")))
    return out

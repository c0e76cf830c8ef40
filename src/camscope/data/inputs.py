"""Inputs of the commands that read images: files, folders, URLs or the demo images, each with a
unique, safe file-name stem for its outputs."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import torch

    from ..models import ModelSpec


@dataclass(frozen=True)
class LoadOptions:
    """How input images are read (see :func:`camscope.io.load_image`)."""

    max_pixels: int | None = None
    timeout: float | None = None  # total seconds for one URL download (None: io's default)
    window: tuple[float, float] | None = None  # DICOM/NIfTI window (centre, width)


@dataclass(frozen=True)
class InputItem:
    """One image to process: where it comes from, a file-name stem, and a loader."""

    source: str
    stem: str
    image: Any = None  # an already decoded PIL image (demo images), else loaded from ``source``

    def load(
        self, spec: ModelSpec, max_pixels: int | None = None, options: LoadOptions | None = None
    ) -> tuple[Any, torch.Tensor]:
        """The decoded image and its model input; raises ImageLoadError for a bad file."""
        from .. import io

        options = options or LoadOptions()
        image = self.image
        if image is None:
            deadline = options.timeout or io.DEFAULT_DEADLINE
            image = io.load_image(
                self.source,
                max_pixels=max_pixels or options.max_pixels or io.DEFAULT_MAX_PIXELS,
                timeout=min(io.DEFAULT_TIMEOUT, deadline),
                deadline=deadline,
                window=options.window,
            )
        return image, io.preprocess(image, spec)


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


def unique_stems(stems: Sequence[str]) -> list[str]:
    """Make stems unique in order: ``cat, cat, cat-2`` -> ``cat, cat-2, cat-2-2``."""
    used: set[str] = set()
    result: list[str] = []
    for stem in stems:
        candidate, n = stem, 2
        while candidate.casefold() in used:
            candidate = f"{stem}-{n}"
            n += 1
        used.add(candidate.casefold())
        result.append(candidate)
    return result


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


def gather_inputs(images: Sequence[str]) -> list[InputItem]:
    """Command-line image arguments (files, folders, URLs) or, when none, the demo images."""
    from .. import io

    if images:
        sources = io.collect_inputs(list(images))
        if not sources:
            raise UsageError(
                f"no images found in {', '.join(map(repr, images))}; image files end in "
                f"{', '.join(io.IMAGE_EXTENSIONS)}"
            )
        pairs: list[tuple[str, Any]] = [(s, None) for s in sources]
        stems = unique_stems([stem_of(s) for s in sources])
    else:
        demo = io.demo_images()
        pairs = [(f"demo:{name}", image) for name, image in demo]
        stems = unique_stems([stem_of(name) for name, _ in demo])
    return [InputItem(src, stem, image) for (src, image), stem in zip(pairs, stems)]

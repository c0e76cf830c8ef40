"""Inputs of the commands that read images: files, folders, URLs or the demo images, each with a
unique, safe file-name stem for its outputs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import torch

    from ..models import ModelSpec


@dataclass(frozen=True)
class InputItem:
    """One image to process: where it comes from, a file-name stem, and a loader."""

    source: str
    stem: str
    image: Any = None  # an already decoded PIL image (demo images), else loaded from ``source``

    def load(self, spec: ModelSpec, max_pixels: int) -> tuple[Any, torch.Tensor]:
        """The decoded image and its model input; raises ImageLoadError for a bad file."""
        from .. import io

        image = self.image
        if image is None:
            image = io.load_image(self.source, max_pixels=max_pixels)
        return image, io.preprocess(image, spec)


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def stem_of(source: str) -> str:
    """File-name stem for an input path or URL: ``/a/b/cat.01.jpg`` -> ``cat.01``."""
    tail = source.split("?", 1)[0].split("#", 1)[0].rstrip("/\\")
    name = re.split(r"[/\\]", tail)[-1] if tail else ""
    stem = Path(name).stem if "." in name else name
    stem = _UNSAFE.sub("_", stem).strip("._") or "image"
    return stem[:80]


def unique_stems(stems: Sequence[str]) -> list[str]:
    """Make stems unique in order: ``cat, cat, cat-2`` -> ``cat, cat-2, cat-2-2``."""
    used: set[str] = set()
    result: list[str] = []
    for stem in stems:
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate = f"{stem}-{n}"
            n += 1
        used.add(candidate.lower())
        result.append(candidate)
    return result


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

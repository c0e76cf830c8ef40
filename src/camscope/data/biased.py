"""A biased variant of the built-in images: a spurious cue that co-occurs with each class.

The Grad-CAM paper (Selvaraju et al. 2017, Sec. 6.3) trained a doctor/nurse classifier on a data
set where gender went with the class, and found the shortcut with Grad-CAM. This generator plants
a shortcut we control. Each image holds one object of the built-in set
(:mod:`camscope.data.synthetic`: cat, cup, rocket, motorcycle on a random background) and one
**cue**: a solid square patch whose colour and place belong to one class,

======  ============  ========================
class   cue place     cue colour (RGB)
======  ============  ========================
1st     top-left      (230, 25, 75) red
2nd     top-right     (0, 130, 200) blue
3rd     bottom-left   (255, 225, 25) yellow
4th     bottom-right  (145, 30, 180) purple
======  ============  ========================

inset by 3% of the side, ``cue_size`` (default 1/8) of the side wide. With probability ``bias`` an
image carries its own class's cue, otherwise the cue of one of the other classes, chosen
uniformly. ``bias = 1`` is a perfect shortcut; ``bias = None`` (or ``1 / K`` for ``K`` classes)
makes cue and class independent, which is what a test split needs. Every image carries exactly
one cue, so the presence of a patch says nothing; only its colour and place do.

Classes are balanced: image ``i`` shows object ``i mod K``. The object is pasted first and the cue
on top; the object's mask loses the pixels the cue covers and its box is the tight box of what is
left. Image ``i`` depends only on ``(seed, i)``: the object, background and position come from
:class:`~camscope.data.synthetic.SyntheticBenchmark` with the same seed and index, the cue from a
separate stream (``numpy.random.default_rng([seed, i, 1])``).

:func:`write_split` writes a split to disk, as class folders (for ``camscope train``) or as
images with ``boxes.csv`` and ``masks/`` (for ``camscope audit``).

Example:
    >>> train = BiasedBenchmark(400, size=64, seed=0, bias=0.95)
    >>> test = BiasedBenchmark(200, size=64, seed=1, bias=None)
    >>> sample = train[5]  # doctest: +SKIP
    >>> sample.objects[0].label, sample.extra["cue"]  # doctest: +SKIP
    ('cup', 'cup')
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError
from .dataset import GroundTruth, Sample
from .synthetic import OBJECTS, SyntheticBenchmark, generated, tight_box

CUE_COLOURS = ((230, 25, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180))
CUE_PLACES = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass
class BiasedImage:
    """One rendered image: the picture, its class, the cue it carries and the object's mask."""

    image: np.ndarray
    label: str
    cue: str
    mask: np.ndarray
    cue_box: tuple[int, int, int, int]


class BiasedBenchmark:
    """Built-in images with a class-linked cue (see the module docstring).

    Args:
        length: number of images.
        size: square side in pixels (at least 32).
        seed: the seed; use different seeds for training and test splits.
        bias: probability that an image carries its own class's cue, in [0, 1]; None for cue
            and class independent.
        objects: object kinds, at most four (default all four of the built-in set).
        cue_size: the patch's side as a fraction of the image side.
        scale: the object's longer side as a fraction of the image side.
    """

    def __init__(
        self,
        length: int,
        size: int = 64,
        seed: int = 0,
        bias: float | None = 1.0,
        objects: tuple[str, ...] | None = None,
        cue_size: float = 0.125,
        scale: tuple[float, float] = (0.4, 0.8),
    ) -> None:
        names = objects or tuple(o.name for o in OBJECTS)
        if len(names) > len(CUE_PLACES) or len(names) < 2:
            raise UsageError(
                f"the biased set needs 2 to {len(CUE_PLACES)} object kinds; got {names}"
            )
        if bias is not None and not 0.0 <= bias <= 1.0:
            raise UsageError(f"bias must be a probability in [0, 1] (or None); got {bias}")
        if not 0.02 <= cue_size <= 0.3:
            raise UsageError(f"cue_size must be between 0.02 and 0.3 of the side; got {cue_size}")
        self.length = length
        self.size = size
        self.seed = seed
        self.bias = bias
        self.names = list(names)
        self.cue_size = cue_size
        # One single-object benchmark per kind: image i of kind k uses index i, so every image
        # has its own background and position.
        self._benches = [
            SyntheticBenchmark(
                max(1, length),
                size=size,
                seed=seed,
                two_object_fraction=0.0,
                scale=scale,
                objects=(name,),
            )
            for name in self.names
        ]

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Sample]:
        for i in range(self.length):
            yield self[i]

    def cue_of(self, index: int) -> int:
        """The class index whose cue image ``index`` carries."""
        k = len(self.names)
        label = index % k
        rng = np.random.default_rng([self.seed, index, 1])
        if self.bias is None:
            return int(rng.integers(k))
        if rng.random() < self.bias:
            return label
        other = int(rng.integers(k - 1))
        return other if other < label else other + 1

    def cue_box(self, cls: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` pixel box of class ``cls``'s cue."""
        side = max(2, round(self.cue_size * self.size))
        inset = round(0.03 * self.size)
        place = CUE_PLACES[cls]
        x0 = inset if place.endswith("left") else self.size - inset - side
        y0 = inset if place.startswith("top") else self.size - inset - side
        return x0, y0, x0 + side, y0 + side

    def render(self, index: int) -> BiasedImage:
        if not 0 <= index < self.length:
            raise IndexError(index)
        label = index % len(self.names)
        base = self._benches[label].render(index)
        cue = self.cue_of(index)
        x0, y0, x1, y1 = self.cue_box(cue)
        image = base.image.copy()
        image[y0:y1, x0:x1] = CUE_COLOURS[cue]
        mask = base.masks[0].copy()
        mask[y0:y1, x0:x1] = False
        return BiasedImage(image, self.names[label], self.names[cue], mask, (x0, y0, x1, y1))

    def __getitem__(self, index: int) -> Sample:
        r = self.render(index)
        ids = next(o.class_ids for o in OBJECTS if o.name == r.label)
        objects = [GroundTruth(r.label, ids, tight_box(r.mask))]
        sample_id = f"biased-{self.seed}-{index:06d}"
        return generated(sample_id, r.image, objects, cue=r.cue, mask=r.mask, cue_box=r.cue_box)


def write_split(bench: BiasedBenchmark, out_dir: str | Path, layout: str) -> Path:
    """Write every image of ``bench`` as PNG files.

    Args:
        layout: ``"folders"``: ``out_dir/<class>/<id>.png`` (the layout ``camscope train`` and the
            diagnosis commands read); ``"boxes"``: ``out_dir/images/<id>.png`` with
            ``boxes.csv`` (``file, class, x0, y0, x1, y1``), ``masks/<id>.png`` (the object) and
            ``cues.tsv`` (``file, class, cue``, tab-separated so that ``boxes.csv`` stays the folder's
            one annotation file).

    Returns:
        ``out_dir``.
    """
    if layout not in ("folders", "boxes"):
        raise UsageError(f"layout must be 'folders' or 'boxes'; got {layout!r}")
    out = Path(out_dir)
    rows: list[list[object]] = [["file", "class", "x0", "y0", "x1", "y1"]]
    cues: list[list[object]] = [["file", "class", "cue"]]
    for index in range(len(bench)):
        r = bench.render(index)
        name = f"{bench.seed}-{index:06d}.png"
        if layout == "folders":
            target = out / r.label / name
        else:
            target = out / "images" / name
            x0, y0, x1, y1 = tight_box(r.mask)
            rows.append([f"images/{name}", r.label, x0, y0, x1, y1])
            cues.append([f"images/{name}", r.label, r.cue])
            (out / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(r.mask.astype(np.uint8) * 255).save(out / "masks" / name)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(r.image).save(target)
    if layout == "boxes":
        with (out / "boxes.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
        with (out / "cues.tsv").open("w", newline="") as fh:
            csv.writer(fh, delimiter="\t").writerows(cues)
    return out

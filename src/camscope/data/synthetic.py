"""The built-in localization benchmark: real objects pasted onto real backgrounds, with exact boxes.

No download: the objects are cut out of scikit-image's bundled sample photos with masks drawn by
hand for this project (polygons and ellipses in the photo's pixel coordinates, below), and pasted at
a random position, scale and mirror onto a random crop of a texture or another photo. The box of each
object is the tight box of its pasted (binary) mask, so it is exact by construction.

Objects and the ImageNet-1k classes that count as correct for them (our choice; ImageNet has no
single class for some of these, so every close class is accepted):

===========  ==============================  ============================================
object       photo (``skimage.data``)         accepted ImageNet classes
===========  ==============================  ============================================
cat          ``chelsea`` (head and chest)    281 tabby, 282 tiger cat, 285 Egyptian cat
cup          ``coffee`` (cup and saucer)     967 espresso, 968 cup, 504 coffee mug
rocket       ``rocket`` (the launch vehicle)  657 missile, 744 projectile/missile
motorcycle   ``stereo_motorcycle`` (left)     665 moped, 670 motor scooter (ImageNet-1k has
                                              no "motorcycle" class; these are the nearest)
===========  ==============================  ============================================

Backgrounds: the textures ``brick``, ``grass``, ``gravel`` and the photos ``astronaut``, ``camera``,
``moon``, ``hubble_deep_field``, ``immunohistochemistry`` and ``coins`` (grey ones as grey RGB),
randomly cropped and resized to the canvas.

Image ``i`` of seed ``s`` depends only on ``(s, i)`` (``numpy.random.default_rng([s, i])``), so a
benchmark of any size is reproducible and its first ``n`` images are those of any larger one.
The generator has two streams: the **evaluation stream** above (ids ``builtin-S-00000i``) and the
**training stream** (``stream="train"``, ``default_rng([s, i, 1])``, ids ``builtin-train-S-00000i``)
that ``camscope train`` renders, so a model trained on ``builtin:N`` is never scored on its own
training images by ``evaluate --data builtin:M`` with the same seed (independent seed sequences
give independent draws). A ``two_object_fraction`` of the images hold two different, non-overlapping objects: they measure class
discrimination (the map for object A's class must fall on A, not on B).

Example:
    >>> from camscope.data.synthetic import SyntheticBenchmark
    >>> bench = SyntheticBenchmark(size=224, seed=0)
    >>> sample = bench[3]  # doctest: +SKIP
    >>> sample.objects[0].label, sample.objects[0].box  # doctest: +SKIP
    ('cat', (31.0, 52.0, 170.0, 166.0))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import UsageError
from .dataset import GroundTruth, Sample, largest

STREAMS = ("eval", "train")


@dataclass(frozen=True)
class ObjectSpec:
    """A cut-out object: source photo, hand-drawn mask shapes and accepted model classes."""

    name: str
    photo: str
    polygons: tuple[str, ...]  # each ``"x,y x,y ..."`` (SVG's points notation), photo pixels
    ellipses: tuple[tuple[int, int, int, int], ...]  # (left, top, right, bottom)
    class_ids: tuple[int, ...]


OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec(
        name="cat",
        photo="chelsea",
        polygons=(
            "25,299 5,200 8,120 30,55 45,10 75,0 330,0 385,10 405,60 395,150 375,230 345,299",
        ),
        ellipses=(),
        class_ids=(281, 282, 285),
    ),
    ObjectSpec(
        name="cup",
        photo="coffee",
        polygons=("178,75 410,75 405,215 182,215",),
        ellipses=((75, 100, 481, 390), (174, 15, 412, 130), (195, 225, 255, 300)),
        class_ids=(967, 968, 504),
    ),
    ObjectSpec(
        name="rocket",
        photo="rocket",
        polygons=("321,126 313,138 309,160 307,210 305,400 338,400 336,210 334,160 330,138",),
        ellipses=(),
        class_ids=(657, 744),
    ),
    ObjectSpec(
        name="motorcycle",
        photo="stereo_motorcycle",
        polygons=(
            "95,205 150,160 330,185 460,155 520,100 560,115 590,170 560,210 640,280 685,380 "
            "660,445 590,450 530,380 460,390 340,375 335,435 270,395 200,400 130,370 120,300 "
            "110,245 95,225",
        ),
        ellipses=(),
        class_ids=(665, 670),
    ),
)

BACKGROUNDS = (
    "brick",
    "grass",
    "gravel",
    "astronaut",
    "camera",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
    "coins",
)


@cache
def _photo(name: str) -> np.ndarray:
    from skimage import data

    arr = getattr(data, name)()
    if name == "stereo_motorcycle":
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def object_mask(spec: ObjectSpec) -> np.ndarray:
    """The hand-drawn binary mask of ``spec`` at its photo's resolution."""
    photo = _photo(spec.photo)
    canvas = Image.new("L", (photo.shape[1], photo.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in spec.polygons:
        draw.polygon([(int(x), int(y)) for x, y in (p.split(",") for p in poly.split())], fill=255)
    for ell in spec.ellipses:
        draw.ellipse(list(ell), fill=255)
    return np.asarray(canvas) > 127


@cache
def _cutout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The object's RGB crop and mask, cropped to the mask's tight box."""
    spec = next(o for o in OBJECTS if o.name == name)
    mask = object_mask(spec)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return _photo(spec.photo)[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def generated(
    sample_id: str, image: np.ndarray, objects: Sequence[GroundTruth], **extra: Any
) -> Sample:
    """A rendered image as a sample, labelled as its largest object."""
    top = largest(objects)
    return Sample(
        sample_id,
        sample_id,
        top.label,
        top.class_ids,
        tuple(objects),
        Image.fromarray(image),
        stem=sample_id,
        size=(image.shape[1], image.shape[0]),
        extra=extra,
    )


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Pixel-edge box ``(x0, y0, x1, y1)`` around the True pixels of a 2-D mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty mask")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@dataclass
class Rendered:
    """One benchmark image with everything needed to check it.

    Attributes:
        image: ``(size, size, 3)`` uint8 composite.
        background: the background alone (same shape).
        masks: one ``(size, size)`` boolean mask per pasted object, in paste order.
        names: object names in paste order.
    """

    image: np.ndarray
    background: np.ndarray
    masks: list[np.ndarray]
    names: list[str]


class SyntheticBenchmark:
    """Deterministic benchmark of ``len`` images (``builtin:N`` on the command line).

    Images are rendered lazily, when indexed (about 150 KB each at 224 px): iterating over a
    benchmark of 4,000 images never holds more than the one being used.

    Args:
        length: number of images.
        size: square canvas side in pixels.
        seed: the benchmark's seed.
        two_object_fraction: probability that an image holds two objects.
        scale: range of the pasted object's longer side as a fraction of the canvas (single
            objects; two-object images use 0.7 times it).
        objects: object names to use (default: all of :data:`OBJECTS`).
        class_ids: model classes that count as each object, replacing the ImageNet classes of
            :data:`OBJECTS` (for a model trained on the built-in set,
            :func:`camscope.data.read.read_data` maps the object names onto its classes).
        stream: ``"eval"`` or ``"train"`` (see the module docstring).
    """

    def __init__(
        self,
        length: int = 100,
        size: int = 224,
        seed: int = 0,
        two_object_fraction: float = 0.3,
        scale: tuple[float, float] = (0.4, 0.8),
        objects: tuple[str, ...] | None = None,
        class_ids: Mapping[str, Sequence[int]] | None = None,
        stream: str = "eval",
    ) -> None:
        if stream not in STREAMS:
            raise UsageError(f"stream must be one of {STREAMS}; got {stream!r}")
        if length < 1:
            raise UsageError(f"the built-in benchmark needs at least one image; got {length}")
        if size < 32:
            raise UsageError(f"benchmark images must be at least 32 px; got {size}")
        if not 0.0 <= two_object_fraction <= 1.0:
            raise UsageError(f"two_object_fraction must be in [0, 1]; got {two_object_fraction}")
        if not 0.05 <= scale[0] <= scale[1] <= 1.0:
            raise UsageError(f"scale must satisfy 0.05 <= low <= high <= 1; got {scale}")
        known = {o.name: o for o in OBJECTS}
        names = objects or tuple(known)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"unknown benchmark object(s) {unknown}; choose from {sorted(known)}")
        if two_object_fraction > 0 and len(names) < 2:
            raise UsageError("two-object images need at least two object kinds")
        self.length = length
        self.stream = stream
        self.size = size
        self.seed = seed
        self.two_object_fraction = two_object_fraction
        self.scale = scale
        self.specs = [known[n] for n in names]
        self.class_ids = {n: tuple(int(i) for i in ids) for n, ids in (class_ids or {}).items()}

    def __len__(self) -> int:
        return self.length

    def ids(self) -> list[str]:
        """Every sample's id, without rendering an image (images are built when indexed)."""
        return [self._id(i) for i in range(self.length)]

    def _id(self, index: int) -> str:
        stream = "" if self.stream == "eval" else f"{self.stream}-"
        return f"builtin-{stream}{self.seed}-{index:06d}"

    def __iter__(self) -> Iterator[Sample]:
        for i in range(self.length):
            yield self[i]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        r = self.render(index)
        ids = {o.name: self.class_ids.get(o.name, o.class_ids) for o in self.specs}
        objects = [GroundTruth(n, ids[n], tight_box(mask)) for n, mask in zip(r.names, r.masks)]
        return generated(self._id(index), r.image, objects)

    def render(self, index: int) -> Rendered:
        """Render image ``index`` (depends only on the seed and the index)."""
        entropy = [self.seed, index] if self.stream == "eval" else [self.seed, index, 1]
        rng = np.random.default_rng(entropy)
        n = self.size
        background = self._background(rng)
        two = rng.random() < self.two_object_fraction
        count = 2 if two else 1
        picks = rng.choice(len(self.specs), size=count, replace=False)
        low, high = self.scale if not two else (0.7 * self.scale[0], 0.7 * self.scale[1])
        image = background.copy()
        masks: list[np.ndarray] = []
        names: list[str] = []
        placed: list[tuple[float, float, float, float]] = []
        for k in picks:
            spec = self.specs[int(k)]
            rgb, mask = _cutout(spec.name)
            for _attempt in range(100):
                side = rng.uniform(low, high) * n
                f = side / max(rgb.shape[:2])
                w = max(4, round(rgb.shape[1] * f))
                h = max(4, round(rgb.shape[0] * f))
                flip = bool(rng.random() < 0.5)
                x = int(rng.integers(0, n - w + 1))
                y = int(rng.integers(0, n - h + 1))
                box = (x, y, x + w, y + h)
                if all(_apart(box, other) for other in placed):
                    break
                low, high = 0.9 * low, 0.9 * high  # crowded: try smaller
            else:  # pragma: no cover - only with absurd scales
                raise UsageError("could not place two non-overlapping objects; lower the scale")
            obj = Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR)
            alpha = Image.fromarray(mask.astype(np.uint8) * 255).resize(
                (w, h), Image.Resampling.BILINEAR
            )
            obj_arr = np.asarray(obj)
            hard = np.asarray(alpha) >= 128
            if flip:
                obj_arr, hard = obj_arr[:, ::-1], hard[:, ::-1]
            full = np.zeros((n, n), dtype=bool)
            full[y : y + h, x : x + w] = hard
            region = image[y : y + h, x : x + w]
            region[hard] = obj_arr[hard]
            masks.append(full)
            names.append(spec.name)
            placed.append(tight_box(full))
        return Rendered(image=image, background=background, masks=masks, names=names)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        photo = _photo(name)
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side])
        return np.asarray(crop.resize((self.size, self.size), Image.Resampling.BILINEAR)).copy()


def _apart(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Boxes do not overlap (touching edges allowed)."""
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]

"""The one labelled-dataset type: :class:`LabelledData`, a sequence of :class:`Sample` records.

Every reader returns one (:func:`camscope.data.read.read_data`) and every command walks its
samples (:class:`camscope.data.walk.Walk`). Nothing is decoded until :meth:`Sample.decode` /
:meth:`Sample.prepare` (the one decode path), so a broken file fails alone, when it is reached.
The samples are a list, a :class:`LazySamples` that builds sample ``i`` when indexed (the built-in
set, CIFAR arrays) or :class:`camscope.data.lists.ArrowSamples` read from Arrow columns (lists of
millions of images); all give their ids without building a sample (:func:`sample_ids`) and take
subsets (:func:`take`).

Example:
    >>> sample = read_data("builtin:4", []).items[0]  # doctest: +SKIP
    >>> sample.label, sample.class_ids, sample.boxes  # doctest: +SKIP
    ('cup', (967, 968, 504), ((31.0, 52.0, 170.0, 166.0),))
    >>> sample.prepare(spec).x.shape  # doctest: +SKIP
    torch.Size([1, 3, 224, 224])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import ImageLoadError

if TYPE_CHECKING:
    from torch import Tensor

    from ..models import ModelSpec

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruth:
    """One annotated object.

    Attributes:
        label: the class name as written in the annotation.
        class_ids: the model classes that count as this object (empty when unmapped).
        box: ``(x0, y0, x1, y1)`` pixel-edge box in the image's pixels.
    """

    label: str
    class_ids: tuple[int, ...]
    box: Box


@dataclass(frozen=True)
class LoadOptions:
    """How images are decoded (:func:`camscope.io.load_image`): the pixel cap, the total seconds
    of one URL download, the DICOM/NIfTI window ``(centre, width)``; None: the library's default."""

    max_pixels: int | None = None
    timeout: float | None = None
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class Sample:
    """One image of a data set, not yet decoded (unless ``image`` holds it).

    Attributes:
        id: its name in reports and results (a path below the data folder, an annotation's file
            name, ``builtin-0-000042``, a list's ``id`` column).
        source: where the image is read from: a file path, a URL, ``demo:<name>`` or, for images
            held in memory, the id.
        label: the data-set class (the largest object's for annotated images; None: unlabelled).
        class_ids: the model classes that count as ``label`` (empty: unknown or unmapped).
        objects: every annotated object, with its own label, classes and box.
        image: the RGB image in memory (a ``PIL.Image`` or an ``(H, W, 3)`` uint8 array).
        stem: a unique, file-name-safe stem for output files ("" where nobody writes files).
        mask: a PNG object mask (non-zero = object), resized to the image when read.
        size: ``(width, height)`` when an annotation says it.
        error: why this sample cannot be used, found when it was read (an unmapped class folder).
        extra: what a reader adds (the annotation file, a generator's cue).
    """

    id: str
    source: str
    label: str | None = None
    class_ids: tuple[int, ...] = ()
    objects: tuple[GroundTruth, ...] = ()
    image: Any = None
    stem: str = ""
    mask: Path | None = None
    size: tuple[int, int] | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The image file (None for images in memory and URLs)."""
        if self.image is not None or "://" in self.source or self.source.startswith("demo:"):
            return None
        return Path(self.source)

    @property
    def boxes(self) -> tuple[Box, ...]:
        """The boxes of the objects of this sample's label."""
        return tuple(o.box for o in self.objects if o.label == self.label)

    @property
    def object_boxes(self) -> tuple[Box, ...]:
        """The boxes of every object, whatever its class."""
        return tuple(o.box for o in self.objects)

    def decode(self, options: LoadOptions | None = None) -> Image.Image:
        """The RGB image; raises :class:`ImageLoadError` (the reason names no path: the caller
        names the sample) for a bad or missing file or a sample read with an error."""
        from .. import io

        if self.error:
            raise ImageLoadError(self.source, self.error)
        if self.image is not None:
            image = self.image
            return Image.fromarray(image) if isinstance(image, np.ndarray) else image
        o = options or LoadOptions()
        deadline = o.timeout or io.DEFAULT_DEADLINE
        return io.load_image(
            self.source,
            max_pixels=o.max_pixels or io.DEFAULT_MAX_PIXELS,
            timeout=min(io.DEFAULT_TIMEOUT, deadline),
            deadline=deadline,
            window=o.window,
        )

    def prepare(self, spec: ModelSpec, options: LoadOptions | None = None) -> Prepared:
        """Decode the image and make its ``(1, C, H, W)`` model input with
        :func:`camscope.io.preprocess` (the whole image resized, no crop, so every box stays in).

        Raises:
            ImageLoadError: the image cannot be read, or a box lies wholly outside it.
        """
        from .. import io

        image = self.decode(options)
        width, height = image.size
        for o in self.objects:
            x0, y0, x1, y1 = o.box
            if x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
                raise ImageLoadError(
                    self.source,
                    f"the box {o.box} of {o.label!r} lies outside the {width} x {height} image; "
                    "fix the annotation",
                )
        x = io.preprocess(image, spec)
        h_in, w_in = (int(v) for v in spec.input_size)
        return Prepared(self, image, x, (w_in / width, h_in / height))

    def read_mask(self, size: tuple[int, int]) -> np.ndarray | None:
        """The ``(H, W)`` boolean object mask at ``size = (width, height)``, or None."""
        if self.mask is None:
            return None
        try:
            with Image.open(self.mask) as raw:
                mask = raw.convert("L")
                if mask.size != size:
                    mask = mask.resize(size, Image.Resampling.NEAREST)
                return np.asarray(mask) > 0
        except (OSError, Image.DecompressionBombError) as err:
            raise ImageLoadError(str(self.mask), f"object mask cannot be read ({err})") from None


@dataclass
class Prepared:
    """A decoded sample: its RGB ``image``, its ``(1, C, H, W)`` model input ``x`` and the
    ``(sx, sy)`` factors from image pixels to input pixels."""

    sample: Sample
    image: Image.Image
    x: Tensor
    scale: tuple[float, float]

    def scaled(self, boxes: Sequence[Box]) -> Tensor:
        """``boxes`` at the model input's size, ``(M, 4)`` float32."""
        import torch

        sx, sy = self.scale
        rows = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in boxes]
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


class LazySamples(Sequence[Sample]):
    """Samples built when indexed: sample ``k`` is ``make(index[k])``; the ids are known ahead.

    ``make`` must be picklable (a bound method of a picklable object) when DataLoader workers
    are started by spawning.
    """

    def __init__(
        self, make: Callable[[int], Sample], ids: Sequence[str], index: Sequence[int] | None = None
    ) -> None:
        self.make = make
        self._ids = list(ids)
        self._index = list(range(len(self._ids))) if index is None else list(index)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return LazySamples(self.make, self._ids[k], self._index[k])
        return self.make(self._index[k])

    def ids(self) -> list[str]:
        return list(self._ids)

    def take(self, positions: Sequence[int]) -> LazySamples:
        return LazySamples(
            self.make, [self._ids[k] for k in positions], [self._index[k] for k in positions]
        )


@dataclass
class ArrayImages:
    """In-memory ``(N, H, W, 3)`` uint8 images with their class indices (CIFAR, the rendered
    built-in set), boxes where known, as lazy samples (:meth:`samples`)."""

    images: np.ndarray
    ids: list[str]
    labels: list[int]
    classes: list[str]
    boxes: list[Box] | None = None

    def samples(self) -> LazySamples:
        return LazySamples(self.sample, self.ids)

    def sample(self, i: int) -> Sample:
        label = self.classes[self.labels[i]]
        ids = (self.labels[i],)
        objects = () if self.boxes is None else (GroundTruth(label, ids, self.boxes[i]),)
        return Sample(self.ids[i], self.ids[i], label, ids, objects, self.images[i], self.ids[i])


def largest(objects: Sequence[GroundTruth]) -> GroundTruth:
    """The object with the largest box (a sample is labelled as its largest object)."""
    return max(objects, key=lambda o: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))


def sample_ids(samples: Sequence[Sample]) -> list[str]:
    """The ids of ``samples``, without building or decoding a sample where the sequence can say
    them (``ids()``)."""
    ids = getattr(samples, "ids", None)
    return list(ids()) if callable(ids) else [s.id for s in samples]


def take(samples: Sequence[Sample], positions: Sequence[int]) -> Sequence[Sample]:
    """The samples at ``positions``, as lazy as ``samples`` is."""
    pick = getattr(samples, "take", None)
    return pick(positions) if callable(pick) else [samples[k] for k in positions]


@dataclass
class LabelledData:
    """What :func:`camscope.data.read_data` found.

    Attributes:
        items: the samples, in data-set order.
        classes: the data set's class names in data-set order (empty for unlabelled images).
        class_ids: class name -> accepted model classes.
        kind: ``"builtin"``, ``"annotations"``, ``"folders"``, ``"cifar10"``, ``"cifar100"``,
            ``"images"``, ``"folder"`` (every image below a folder), ``"csv"`` or ``"parquet"``.
        description: what the data is (for reports).
        skipped: ``(id, reason)`` of images left out before any decoding.
        notes: what the user should know about the data (skipped labels, clipped boxes).
        root: the folder the ids are relative to, absolute ("" when none).
        listing: the folder or file the data was read from, absolute ("" for built-in data).
        details: facts for reports and run folders (counts of unmapped labels, clipped boxes,
            missing files; the generator seed of the built-in set).
    """

    items: Sequence[Sample]
    classes: list[str] = field(default_factory=list)
    class_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    kind: str = "images"
    description: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    root: str = ""
    listing: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def ids(self) -> list[str]:
        return sample_ids(self.items)

    def subset(self, positions: Sequence[int]) -> LabelledData:
        """The same data with only the samples at ``positions``."""
        return replace(self, items=take(self.items, positions))

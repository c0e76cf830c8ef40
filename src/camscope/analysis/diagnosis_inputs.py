"""Inputs of the diagnosis commands: images with (or without) a known class and boxes.

Four kinds of data, one record type (:class:`LabelledItem`):

* **class folders** (``root/<class>/*.jpg``, :func:`camscope.data.folders.scan_class_folders`):
  the folder name is the class, mapped onto the model's classes by
  :class:`camscope.data.classes.ClassMapper` (ImageNet names, WordNet lemmas or synset ids for
  ImageNet models; the model's own class names, e.g. a ``camscope train`` run's classes,
  otherwise). A folder whose name matches no model class makes its images fail (named, the
  others go on); when no folder matches, that is a usage error;
* **annotated data** read by ``camscope evaluate`` (VOC XML, COCO JSON, CSV boxes, in the
  folder layouts of :mod:`camscope.data.layouts`: VOC, Oxford-IIIT Pet, COCO), with the same
  :class:`DataOptions` (``--images``, ``--class-map``, ``--unmapped``, ``--allow-outside-paths``):
  the class of the first object is the image's class, every object's box is kept;
* **the built-in benchmark** ``builtin:N`` (:mod:`camscope.data.synthetic`), with exact boxes;
  for a model trained on it by ``camscope train`` (its classes are the object kinds) each
  object is its own class;
* **plain images** (files, folders, URLs; the demo photos when none): no class, no boxes.

Example:
    >>> data = open_labelled("pets/", spec.class_names, (224, 224))  # doctest: +SKIP
    >>> data.classes, data.items[0].class_ids  # doctest: +SKIP
    (['Egyptian cat', 'tabby'], (285,))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatasetError, UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from ..data.annotations import Sample
    from ..models import ModelSpec

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class DataOptions:
    """How labelled data is read (the options ``camscope evaluate`` has for the same data).

    Attributes:
        seed: seed of ``builtin:N``.
        images: the folder that holds an annotated data set's images.
        class_map: a JSON file ``{"label": ["model class", ...]}``
            (:func:`camscope.data.classes.read_class_map`); also for class-folder names.
        unmapped: labels that map to no model class: ``"error"`` (annotations: stop and list
            them; class folders: their images fail, named, and the others go on) or ``"skip"``
            (left out, counted in :attr:`LabelledData.notes`).
        allow_outside: accept image paths in annotations that leave the data folder.
    """

    seed: int = 0
    images: str | None = None
    class_map: str | None = None
    unmapped: str = "error"
    allow_outside: bool = False


@dataclass(frozen=True)
class LabelledItem:
    """One image to diagnose.

    Attributes:
        source: file path, URL, ``demo:<name>`` or the benchmark's sample id.
        stem: a unique, file-name-safe stem for its outputs.
        label: the data set's class name (None for plain images).
        class_ids: the model classes that count as correct (empty: unknown).
        boxes: object boxes in the image's own pixels (``x0, y0, x1, y1``).
        image: the decoded RGB image when it is held in memory.
        error: why this item cannot be used (set before loading, e.g. an unmapped class folder).
    """

    source: str
    stem: str
    label: str | None = None
    class_ids: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    image: Any = None
    error: str | None = None

    def load(self, spec: ModelSpec, max_pixels: int) -> tuple[Any, Tensor, Tensor]:
        """The RGB image, its ``(1, 3, H, W)`` model input and its boxes at the input size
        ``(M, 4)``; raises :class:`~camscope.errors.ImageLoadError` for a bad file."""
        import torch

        from .. import io

        image = (
            self.image
            if self.image is not None
            else io.load_image(self.source, max_pixels=max_pixels)
        )
        x = io.preprocess(image, spec)
        sx = spec.input_size[1] / image.width
        sy = spec.input_size[0] / image.height
        boxes = torch.tensor(
            [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in self.boxes],
            dtype=torch.float32,
        ).reshape(-1, 4)
        return image, x, boxes


@dataclass
class LabelledData:
    """What :func:`open_labelled` / :func:`open_images` found.

    Attributes:
        description: what the data is (for the reports).
        items: the images.
        classes: the data set's class names in order (empty for plain images).
        class_ids: class name -> accepted model classes.
        notes: what the user should know about the data (skipped labels, clipped boxes).
    """

    description: str
    items: list[LabelledItem]
    classes: list[str] = field(default_factory=list)
    class_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _stems(sources: Sequence[str]) -> list[str]:
    from ..batch.inputs import stem_of, unique_stems

    return unique_stems([stem_of(s) for s in sources])


def is_data_argument(text: str, images: str | None = None) -> bool:
    """Whether ``text`` names annotated data (``builtin:N``, an annotation file, or a folder in
    one of the layouts of :func:`camscope.data.layouts.find_annotations`) rather than images or
    class folders."""
    from ..data.layouts import find_annotations

    if text.startswith("builtin"):
        return True
    path = Path(text).expanduser()
    if path.is_file():
        return path.suffix.lower() in (".csv", ".json", ".xml")
    if not path.is_dir():
        return False
    try:
        find_annotations(path, images)
    except DatasetError:
        return False
    return True


def _from_samples(
    samples: Sequence[Sample], description: str, notes: Sequence[str] = ()
) -> LabelledData:
    labels = [s.objects[0].label if s.objects else None for s in samples]
    sources = [str(s.path) if s.path is not None else s.id for s in samples]
    items = [
        LabelledItem(
            source=src,
            stem=stem,
            label=label,
            class_ids=tuple(s.objects[0].class_ids) if s.objects else (),
            boxes=tuple(o.box for o in s.objects),
            image=s.image,
        )
        for s, src, stem, label in zip(samples, sources, _stems(sources), labels)
    ]
    classes = sorted({label for label in labels if label is not None})
    ids: dict[str, tuple[int, ...]] = {}
    for item in items:
        if item.label is not None:
            ids.setdefault(item.label, item.class_ids)
    return LabelledData(description, items, classes, ids, list(notes))


def _builtin(text: str, class_names: Sequence[str], size: Sequence[int], seed: int) -> LabelledData:
    from ..data.synthetic import SyntheticBenchmark, trained_class_ids

    _, _, count = text.partition(":")
    try:
        n = int(count or 50)
    except ValueError:
        raise UsageError(f"{text!r}: expected builtin:N with N a whole number") from None
    side = int(size[0]) if size[0] == size[1] else 224
    # a model trained on builtin:N (camscope train) has the object kinds as its classes
    ids = trained_class_ids(class_names) if class_names else None
    samples = list(SyntheticBenchmark(n, size=side, seed=seed, class_ids=ids))
    return _from_samples(samples, f"builtin:{n} (seed {seed})")


def _mapper(class_names: Sequence[str], options: DataOptions) -> Any:
    from ..data.classes import ClassMapper, read_class_map

    mapper = ClassMapper(class_names or None)
    if options.class_map:
        mapper = ClassMapper(class_names or None, read_class_map(options.class_map, mapper))
    return mapper


def _class_folders(root: str, class_names: Sequence[str], options: DataOptions) -> LabelledData:
    from ..data.folders import scan_class_folders

    data = scan_class_folders(root, empty="skip")
    mapper = _mapper(class_names, options)
    ids: dict[str, tuple[int, ...]] = {}
    unmapped: dict[str, str] = {}
    for name in data.classes:
        try:
            ids[name] = mapper.map(name)
        except DatasetError as err:
            unmapped[name] = f"class folder {name!r}: {err}"
    if not ids:
        first = next(iter(unmapped.values()))
        raise DatasetError(
            f"no class folder of {root!r} names a class of the model; {first}. "
            "Map the folder names with --class-map FILE"
        )
    notes = []
    found = data.items
    if options.unmapped == "skip" and unmapped:
        found = [(path, label) for path, label in data.items if data.classes[label] in ids]
        notes.append(
            f"skipped {len(data.items) - len(found)} image(s) in class folders that name no class "
            f"of the model ({', '.join(sorted(unmapped))})"
        )
    sources = [str(path) for path, _ in found]
    items = [
        LabelledItem(
            source=src,
            stem=stem,
            label=data.classes[label],
            class_ids=ids.get(data.classes[label], ()),
            error=unmapped.get(data.classes[label]),
        )
        for (_, label), src, stem in zip(found, sources, _stems(sources))
    ]
    mapped = [name for name in data.classes if name in ids]
    return LabelledData(f"class folders {root}", items, mapped, ids, notes)


def open_labelled(
    text: str,
    class_names: Sequence[str],
    size: Sequence[int],
    options: DataOptions | None = None,
) -> LabelledData:
    """Labelled data from ``builtin:N``, an annotation file or folder, or class folders."""
    opts = options or DataOptions()
    if opts.unmapped not in ("error", "skip"):
        raise UsageError(f"unmapped must be 'error' or 'skip'; got {opts.unmapped!r}")
    if text.startswith("builtin"):
        return _builtin(text, class_names, size, opts.seed)
    from ..data.annotations import read_dataset

    if not Path(text).expanduser().exists():
        raise DatasetError(f"{text}: no such file or folder")
    if opts.images is not None or is_data_argument(text):
        found = read_dataset(
            text,
            _mapper(class_names, opts),
            images=opts.images,
            unmapped=opts.unmapped,
            allow_outside=opts.allow_outside,
        )
        return _from_samples(found.samples, found.description, found.notes())
    return _class_folders(str(Path(text).expanduser()), class_names, opts)


def open_images(sources: Sequence[str]) -> LabelledData:
    """Plain images (files, folders, URLs), or the demo photos when ``sources`` is empty."""
    from ..batch.inputs import gather_inputs

    found = gather_inputs(list(sources))
    items = [LabelledItem(source=i.source, stem=i.stem, image=i.image) for i in found]
    return LabelledData(", ".join(sources) if sources else "demo images", items)

"""Labelled images for the analysis commands (``audit``, ``embed``, ``failures``, ``adversarial``).

One reader, :func:`read_labelled`, one record, :class:`LabelledItem`. ``DATA`` is read as in
``camscope evaluate``, plus class folders:

* ``builtin`` / ``builtin:N``: the built-in ground-truthed images (:mod:`camscope.data.synthetic`),
  rendered when read (the set is small);
* a ``.csv``, COCO ``.json`` or VOC ``.xml`` file, or a folder in one of the layouts
  :func:`camscope.data.layouts.find_annotations` knows (VOC, Oxford-IIIT Pet, COCO): images with
  object boxes, read by :func:`camscope.data.annotations.read_dataset` (``evaluate``'s reader);
* any other folder: one subfolder per class (:func:`camscope.data.folders.scan_class_folders`),
  no boxes.

An image's class is the label of its largest annotated object; its boxes are the boxes of that
label (:meth:`LabelledItem.prepare` gives the boxes of every object). Object masks, where given, are PNG files
``masks/<image stem>.png`` beside the annotations (non-zero = object; resized with nearest
neighbours when their size differs). :func:`open_images` wraps plain images (no class, no boxes)
in the same record.

Data-set labels map onto the model's classes with :class:`camscope.data.classes.ClassMapper`
(names, WordNet lemmas, ImageNet synsets, indices, ``a|b``, a ``--class-map`` file). Labels that
map to no class (:attr:`DataOptions.unmapped`): ``"error"`` lists them all in one
:class:`DatasetError`, ``"skip"`` leaves their images out (said in :attr:`LabelledData.notes`),
``"keep"`` keeps them with no accepted class (``camscope embed``). For class folders with
``"error"``, :attr:`DataOptions.unmapped_folders` chooses between stopping (``"error"``, ``audit``)
and letting the folder's images fail one by one, named, while the others go on (``"fail"``,
``failures`` and ``adversarial``; no mapped folder at all still stops). Nothing is decoded (apart
from the built-in set) until :meth:`LabelledItem.load`, so a broken file fails alone.

Example:
    >>> data = read_labelled("builtin:20", ["cat", "cup", "motorcycle", "rocket"])  # doctest: +SKIP
    >>> data.classes, data.items[0].label  # doctest: +SKIP
    (['cat', 'cup', 'rocket', 'motorcycle'], 'cup')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import DatasetError, ImageLoadError, UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from ..models import ModelSpec
    from .annotations import Sample
    from .classes import ClassMapper

Box = tuple[float, float, float, float]
UNMAPPED = ("error", "skip", "keep")
_BUILTIN = re.compile(r"^builtin(?::(\d+))?$")
_ANNOTATIONS = (".csv", ".json", ".xml")


@dataclass(frozen=True)
class DataOptions:
    """How labelled data is read (``--images``, ``--class-map``, ``--unmapped``,
    ``--allow-outside-paths``, as in ``camscope evaluate``).

    Attributes:
        images: the folder that holds the annotated images (default: the layout's folders).
        class_map: a JSON file ``{"data-set label": ["model class name or index", ...]}``; also
            for class-folder names.
        unmapped: ``"error"``, ``"skip"`` or ``"keep"`` (see the module docstring).
        unmapped_folders: with ``unmapped="error"``, class folders that name no model class stop
            the run (``"error"``) or make only their own images fail (``"fail"``).
        allow_outside: accept image paths in annotations that leave the data folder.
    """

    images: str | None = None
    class_map: str | None = None
    unmapped: str = "error"
    unmapped_folders: str = "error"
    allow_outside: bool = False


@dataclass
class LoadedInput:
    """One decoded image with what is known about it (:meth:`LabelledItem.load`).

    Attributes:
        image: RGB picture.
        label: data-set class name.
        class_ids: model classes that count as correct (empty when the label maps to none).
        boxes: object boxes of that label in the image's pixels.
        mask: ``(H, W)`` boolean object mask at the image's size, or None.
    """

    image: Image.Image
    label: str
    class_ids: tuple[int, ...]
    boxes: tuple[Box, ...] = ()
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class LabelledItem:
    """One image, not yet decoded (unless ``image`` holds it).

    Attributes:
        id: its name in reports: the path below a class-folder root, else the sample id or source.
        source: file path, URL, ``demo:<name>`` or the built-in sample id.
        stem: a unique, file-name-safe stem for its output files.
        label: the data set's class name (None for plain images).
        class_ids: the model classes that count as correct (empty: unknown or unmapped).
        boxes: object boxes of its class in the image's own pixels (``x0, y0, x1, y1``).
        object_boxes: the boxes of every annotated object, whatever its class (``adversarial``'s
            pointing game counts a hit on any object).
        path: the image file, when it is one.
        image: the decoded RGB image when it is held in memory.
        error: why this item cannot be used (set when read, e.g. an unmapped class folder).
        mask_path: where its object mask would be.
        max_pixels: refuse larger images in :meth:`load` (default: the library's limit).
    """

    id: str
    source: str
    stem: str
    label: str | None = None
    class_ids: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    object_boxes: tuple[Box, ...] = ()
    path: Path | None = None
    image: Any = None
    error: str | None = None
    mask_path: Path | None = None
    max_pixels: int | None = None

    def decode(self, max_pixels: int | None = None) -> Image.Image:
        """The RGB image; raises :class:`ImageLoadError` for a bad or missing file."""
        from .. import io

        if self.image is not None:
            return self.image
        limit = max_pixels or self.max_pixels
        return io.load_image(self.source, max_pixels=limit) if limit else io.load_image(self.source)

    def load(self) -> LoadedInput:
        """Decode the image and its mask (``audit``, ``embed``)."""
        if self.error:
            raise ImageLoadError(self.id, self.error)
        image = self.decode()
        mask = None
        if self.mask_path is not None and self.mask_path.is_file():
            mask = _read_mask(self.mask_path, image.size)
        return LoadedInput(image, self.label or "", self.class_ids, self.boxes, mask)

    def prepare(self, spec: ModelSpec, max_pixels: int) -> tuple[Any, Tensor, Tensor]:
        """The RGB image, its ``(1, 3, H, W)`` model input and the boxes of every object at the
        input size ``(M, 4)`` (``failures``, ``adversarial``); raises :class:`ImageLoadError`."""
        import torch

        from .. import io

        image = self.decode(max_pixels)
        x = io.preprocess(image, spec)
        sx = spec.input_size[1] / image.width
        sy = spec.input_size[0] / image.height
        boxes = torch.tensor(
            [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in self.object_boxes],
            dtype=torch.float32,
        ).reshape(-1, 4)
        return image, x, boxes


@dataclass
class LabelledData:
    """What :func:`read_labelled` / :func:`open_images` found.

    Attributes:
        items: the images, in data-set order.
        classes: the data set's class names in data-set order (empty for plain images).
        class_ids: class name -> accepted model classes.
        kind: ``"builtin"``, ``"annotations"``, ``"folders"`` or ``"images"``.
        description: what the data is (for the reports).
        skipped: ``(image id, reason)`` of images left out before any decoding.
        notes: what the user should know about the data (skipped labels, clipped boxes).
    """

    items: list[LabelledItem]
    classes: list[str]
    class_ids: dict[str, tuple[int, ...]]
    kind: str
    description: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_builtin(data: str) -> bool:
    """``builtin`` or ``builtin:N`` exactly (a folder called ``builtin_mine`` is a folder)."""
    return _BUILTIN.match(data.strip()) is not None


def is_annotated(data: str, images: str | None = None) -> bool:
    """Whether ``data`` names annotated data (``builtin[:N]``, an annotation file, or a folder in
    a layout :func:`camscope.data.layouts.find_annotations` knows) rather than images or class
    folders."""
    from .layouts import find_annotations

    if is_builtin(data) or data.strip().startswith("builtin:"):
        return True
    path = Path(data.strip()).expanduser()
    if path.is_file():
        return path.suffix.lower() in _ANNOTATIONS
    if not path.is_dir():
        return False
    try:
        find_annotations(path, images)
    except DatasetError:
        return False
    return True


def read_labelled(
    data: str,
    class_names: Sequence[str],
    options: DataOptions | None = None,
    *,
    seed: int = 0,
    size: int = 224,
    max_pixels: int | None = None,
) -> LabelledData:
    """Find the labelled images of ``data`` (see the module docstring).

    Args:
        data: ``builtin[:N]``, an annotation file or folder, or a class-folder root.
        class_names: the model's class names (empty: ImageNet-1k).
        options: images folder, class map, what to do with unmapped labels, outside paths.
        seed, size: the built-in set's seed and image side.
        max_pixels: refuse larger images (decompression bombs); default the library's limit.
    """
    from .classes import ClassMapper, read_class_map

    options = options or DataOptions()
    if options.unmapped not in UNMAPPED:
        raise UsageError(f"unmapped must be one of {', '.join(UNMAPPED)}; got {options.unmapped!r}")
    if options.unmapped_folders not in ("error", "fail"):
        raise UsageError(
            f"unmapped_folders must be error or fail; got {options.unmapped_folders!r}"
        )
    spec = data.strip()
    if not spec:
        raise UsageError("--data is empty; pass a folder, an annotation file or builtin:N")
    mapper = ClassMapper(list(class_names) or None)
    if options.class_map:
        mapper = ClassMapper(list(class_names) or None, read_class_map(options.class_map, mapper))
    match = _BUILTIN.match(spec)
    if match:
        count = int(match.group(1) or 50)
        return _builtin(count, mapper, class_names, options.unmapped, seed, size)
    if spec.startswith("builtin:"):
        raise UsageError(f"--data {data!r}: expected builtin:N with N a whole number")
    root = Path(spec).expanduser()
    if not root.exists():
        raise DatasetError(
            f"--data {spec!r}: no such file or folder (a class-folder root, an annotation "
            "file or folder, or builtin:N)"
        )
    if options.images is not None or is_annotated(spec, options.images):
        return _annotated(root, mapper, options, max_pixels)
    return _folders(root, mapper, options, max_pixels)


def _stems(sources: Sequence[str]) -> list[str]:
    from .inputs import stem_of, unique_stems

    return unique_stems([stem_of(s) for s in sources])


def _unknown_labels(labels: list[str], where: str) -> DatasetError:
    return DatasetError(
        f"{len(labels)} class(es) in {where} are not classes of the model: "
        f"{', '.join(map(repr, labels))}. Name them after the model's classes (names, ImageNet "
        "synset ids such as n02123045, indices), map them with --class-map FILE, or leave them "
        "out with --unmapped skip"
    )


def _folder_errors(mapper: ClassMapper, unknown: list[str]) -> dict[str, str]:
    """``unmapped_folders="fail"``: why each unknown folder's images fail."""
    errors = {}
    for name in unknown:
        try:
            mapper.map(name)
        except DatasetError as err:
            errors[name] = f"class folder {name!r}: {err}"
    return errors


def _folders(
    root: Path, mapper: ClassMapper, options: DataOptions, max_pixels: int | None
) -> LabelledData:
    from .folders import scan_class_folders

    found = scan_class_folders(root, empty="skip")
    ids = {name: mapper.lookup(name) or () for name in found.classes}
    unknown = [name for name, mapped in ids.items() if not mapped]
    errors: dict[str, str] = {}
    if unknown and options.unmapped == "error":
        if options.unmapped_folders == "error":
            raise _unknown_labels(unknown, f"the class folders of {str(root)!r}")
        errors = _folder_errors(mapper, unknown)
        if len(unknown) == len(ids):
            raise DatasetError(
                f"no class folder of {str(root)!r} names a class of the model; "
                f"{next(iter(errors.values()))}. Map the folder names with --class-map FILE"
            )
    items = [(path, found.classes[index]) for path, index in found.items]
    notes = []
    if unknown and options.unmapped == "skip":
        kept = [(path, label) for path, label in items if ids[label]]
        notes.append(
            f"skipped {len(items) - len(kept)} image(s) in class folders that name no class "
            f"of the model ({', '.join(sorted(unknown))})"
        )
        items = kept
    sources = [str(path) for path, _ in items]
    records = [
        LabelledItem(
            id=str(path.relative_to(root)),
            source=source,
            stem=stem,
            label=label,
            class_ids=ids[label],
            path=path,
            error=errors.get(label),
            max_pixels=max_pixels,
        )
        for (path, label), source, stem in zip(items, sources, _stems(sources))
    ]
    classes = [c for c in found.classes if options.unmapped == "keep" or ids[c]]
    skipped = [(name, "class folder without images") for name in found.empty]
    description = f"class folders {root}"
    class_ids = {c: ids[c] for c in classes}
    return LabelledData(records, classes, class_ids, "folders", description, skipped, notes)


def _largest(sample: Sample) -> tuple[str, tuple[int, ...], tuple[Box, ...]]:
    """The label of the sample's largest object, its model classes and the boxes of that label."""

    def area(box: Box) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    label = max(sample.objects, key=lambda o: area(o.box)).label
    mine = [o for o in sample.objects if o.label == label]
    return label, tuple(mine[0].class_ids), tuple(o.box for o in mine)


def _from_samples(
    samples: Sequence[Sample], mask_dir: Path | None, max_pixels: int | None
) -> tuple[list[LabelledItem], dict[str, tuple[int, ...]]]:
    sources = [str(s.path) if s.path is not None else s.id for s in samples]
    items = []
    class_ids: dict[str, tuple[int, ...]] = {}
    for sample, source, stem in zip(samples, sources, _stems(sources)):
        label, ids, boxes = _largest(sample)
        class_ids.setdefault(label, ids)
        mask = mask_dir / f"{sample.path.stem}.png" if mask_dir and sample.path else None
        items.append(
            LabelledItem(
                id=sample.id,
                source=source,
                stem=stem,
                label=label,
                class_ids=ids,
                boxes=boxes,
                object_boxes=tuple(o.box for o in sample.objects),
                path=sample.path,
                image=sample.image,
                mask_path=mask,
                max_pixels=max_pixels,
            )
        )
    return items, class_ids


def _annotated(
    root: Path, mapper: ClassMapper, options: DataOptions, max_pixels: int | None
) -> LabelledData:
    from .annotations import read_dataset

    found = read_dataset(
        root,
        mapper,
        images=options.images,
        unmapped=options.unmapped,
        allow_outside=options.allow_outside,
    )
    mask_dir = (root if root.is_dir() else root.parent) / "masks"
    items, class_ids = _from_samples(found.samples, mask_dir, max_pixels)
    classes = sorted(class_ids)
    skipped = [(sample_id, "no annotated object of a model class") for sample_id in found.empty]
    return LabelledData(
        items, classes, class_ids, "annotations", found.description, skipped, found.notes()
    )


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as raw:
            mask = raw.convert("L")
            if mask.size != size:
                mask = mask.resize(size, Image.Resampling.NEAREST)
            return np.asarray(mask) > 0
    except OSError as err:
        raise ImageLoadError(str(path), f"object mask cannot be read ({err})") from None


def _builtin(
    count: int,
    mapper: ClassMapper,
    class_names: Sequence[str],
    unmapped: str,
    seed: int,
    size: int,
) -> LabelledData:
    from .synthetic import SyntheticBenchmark

    bench = SyntheticBenchmark(count, size=size, seed=seed)
    # ImageNet models accept every close class of an object; other models (trained on the
    # built-in set by camscope train) name their classes after the objects.
    if len(class_names) not in (0, 1000):
        ids = {spec.name: mapper.lookup(spec.name) or () for spec in bench.specs}
        unknown = [name for name, found in ids.items() if not found]
        if unknown and unmapped != "keep":
            raise _unknown_labels(unknown, "the built-in set")
        bench = SyntheticBenchmark(count, size=size, seed=seed, class_ids=ids)
    items, _ = _from_samples(list(bench), None, None)
    classes = [spec.name for spec in bench.specs]
    class_ids = {spec.name: bench.class_ids.get(spec.name, spec.class_ids) for spec in bench.specs}
    description = f"builtin:{count} (seed {seed})"
    return LabelledData(items, classes, class_ids, "builtin", description)


def open_images(sources: Sequence[str]) -> LabelledData:
    """Plain images (files, folders, URLs), or the demo photos when ``sources`` is empty."""
    from .inputs import gather_inputs

    found = gather_inputs(list(sources))
    items = [LabelledItem(id=i.source, source=i.source, stem=i.stem, image=i.image) for i in found]
    description = ", ".join(sources) if sources else "demo images"
    return LabelledData(items, [], {}, "images", description)

"""Localization data sets: images with ground-truth boxes, and their labels mapped to model classes.

Each annotation format is registered in a file of its own (:mod:`.voc` with Oxford-IIIT Pet,
:mod:`.coco`, :mod:`.csv_boxes`; :func:`camscope.data.layouts.register_format`) and read into
:class:`~camscope.data.dataset.Sample` records; :func:`read_dataset` finds the layout, parses it
and maps the labels (:func:`map_labels`, with :class:`camscope.data.classes.ClassMapper`).

Boxes everywhere are ``(x0, y0, x1, y1)`` floats in the image's own pixels, pixel column ``j``
covering ``[j, j + 1)`` (see :mod:`camscope.metrics.localization`).

Checks (each failure is a :class:`DatasetError` naming the file, the entry and the field): every
field the reader needs is present and of the right type; coordinates and sizes are finite
numbers; a box is not empty or inverted; a box reaching outside an image of known size is clipped
to it (counted in ``details["clipped"]``), one wholly outside is refused; image names that leave
the data folder are refused unless ``allow_outside=True`` (:func:`.layouts.safe_relative`).

Example:
    >>> data = read_dataset("VOC2007", ClassMapper(), unmapped="skip")  # doctest: +SKIP
    >>> data.items[0].objects[0].class_ids, data.details["unmapped"]  # doctest: +SKIP
    ((281, 282, 283, 284, 285), {'person': 12})
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .classes import ClassMapper
from .dataset import LabelledData, Sample, largest
from .layouts import find_annotations
from .spec import UNMAPPED


def map_labels(
    samples: list[Sample], mapper: ClassMapper, unmapped: str = "error"
) -> tuple[list[Sample], dict[str, int]]:
    """Map every object's label to model classes; a sample's label is then the label of its
    largest object.

    Args:
        unmapped: ``"error"``: labels that map to no class are listed in one
            :class:`DatasetError` (each with its count and the first file it appears in);
            ``"skip"``: their objects are dropped and counted; ``"keep"``: their objects stay
            with no class (``class_ids == ()``), nothing is counted (``camscope embed``).

    Returns:
        The mapped samples (objects of unmapped labels dropped) and ``label -> skipped objects``.
    """
    if unmapped not in UNMAPPED:
        raise DatasetError(f"unmapped must be one of {UNMAPPED}; got {unmapped!r}")
    cache: dict[str, tuple[int, ...] | None] = {}
    misses: dict[str, list[Any]] = {}  # label -> [objects, first file, deliberately unmapped]
    out = []
    for s in samples:
        kept = []
        for o in s.objects:
            if o.label not in cache:
                try:
                    cache[o.label] = mapper.lookup(o.label)
                except DatasetError as err:
                    raise DatasetError(f"{s.extra.get('annotation', s.id)}: {err}") from None
            ids = cache[o.label]
            if ids or unmapped == "keep":
                kept.append(replace(o, class_ids=ids or ()))
                continue
            entry = misses.setdefault(o.label, [0, s.extra.get("annotation", s.id), ids == ()])
            entry[0] += 1
        out.append(_named(replace(s, objects=tuple(kept))))
    if misses and unmapped == "error":
        listed = "; ".join(
            f"{label!r} ({n} object(s), first in {first}"
            + (", mapped to no class on purpose)" if deliberate else ")")
            for label, (n, first, deliberate) in sorted(misses.items())
        )
        raise DatasetError(
            f"{len(misses)} data-set class(es) are not classes of the model: {listed}. Map them "
            'with --class-map FILE (JSON {"data-set label": ["model class name or index", ...]}) '
            "or skip their objects with --unmapped skip"
        )
    return out, {label: v[0] for label, v in misses.items()}


def _named(sample: Sample) -> Sample:
    """The sample labelled as its largest object (and that object's classes)."""
    if not sample.objects:
        return sample
    top = largest(sample.objects)
    return replace(sample, label=top.label, class_ids=top.class_ids)


def read_dataset(
    path: str | Path,
    mapper: ClassMapper | None = None,
    *,
    images: str | Path | None = None,
    unmapped: str = "error",
    allow_outside: bool = False,
) -> LabelledData:
    """Read a data set from an annotation file or a folder in a common layout.

    Args:
        path: a ``.csv``, COCO ``.json`` or VOC ``.xml`` file, or a folder
            (:func:`camscope.data.layouts.find_annotations` lists the layouts).
        mapper: label -> model classes (default: ImageNet-1k).
        images: ``--images DIR``: the folder that holds the images.
        unmapped: ``"error"``, ``"skip"`` or ``"keep"`` (see :func:`map_labels`).
        allow_outside: accept image names that leave the data folder.

    Images left without a (mapped) object are skipped (:attr:`LabelledData.skipped`); image files
    that do not exist stay in (they fail when loaded, and the run goes on), unless none exists,
    which is a :class:`DatasetError` naming the folders searched. Object masks, where given, are
    PNG files ``masks/<image stem>.png`` beside the annotations. ``details`` counts the
    ``unmapped`` objects by label, the ``clipped`` boxes and the ``missing`` files.
    """
    from .inputs import with_stems

    layout = find_annotations(path, images)
    samples = layout.parse(allow_outside)
    mapped, skipped = map_labels(samples, mapper or ClassMapper(), unmapped)
    kept = [s for s in mapped if s.objects]
    empty = [s.id for s in mapped if not s.objects]
    if not kept:
        why = (
            f" (every object's class is unmapped: {', '.join(sorted(skipped))})" if skipped else ""
        )
        raise DatasetError(f"{layout.description}: no image with an object to localise{why}")
    missing = [s.source for s in kept if not Path(s.source).is_file()]
    if missing and len(missing) == len(kept):
        raise DatasetError(
            f"annotated images not found: none of {len(kept)} exists (e.g. {missing[0]}); looked in "
            f"{', '.join(str(d) for d in layout.image_dirs)}. Pass the image folder with --images DIR"
        )
    root = Path(path).expanduser()
    masks_dir = (root if root.is_dir() else root.parent) / "masks"
    masks = {p.stem: p for p in masks_dir.glob("*.png")} if masks_dir.is_dir() else {}
    items = [replace(s, mask=masks.get(Path(s.source).stem)) for s in with_stems(kept)]
    class_ids: dict[str, tuple[int, ...]] = {}
    for s in items:
        class_ids.setdefault(str(s.label), s.class_ids)
    clipped = sum(int(s.extra.get("clipped", 0)) for s in kept)
    return LabelledData(
        items,
        sorted(class_ids),
        class_ids,
        "annotations",
        layout.description,
        [(sample_id, "no annotated object of a model class") for sample_id in empty],
        _notes(skipped, len(empty), clipped, missing),
        root=str(root.resolve() if root.is_dir() else root.resolve().parent),
        listing=str(root.resolve()),
        details={"unmapped": skipped, "clipped": clipped, "missing": missing},
    )


def _notes(unmapped: dict[str, int], empty: int, clipped: int, missing: list[str]) -> list[str]:
    """One line per thing the user should know about this data (for stderr and the report)."""
    out = []
    if unmapped:
        parts = ", ".join(f"{k!r}: {v}" for k, v in sorted(unmapped.items()))
        out.append(
            f"skipped {sum(unmapped.values())} object(s) whose class maps to no model "
            f"class ({parts})"
        )
    if empty:
        out.append(f"skipped {empty} image(s) left without an object to localise")
    if clipped:
        out.append(f"clipped {clipped} box(es) that reached outside their image")
    if missing:
        out.append(f"{len(missing)} annotated image file(s) not found, e.g. {missing[0]}")
    return out

"""The one reader: :func:`read_data` turns a data spec (:mod:`.spec`) into :class:`LabelledData`.

Every command that reads a data set calls it; what the command needs (``need``) decides what a
folder is and what is refused: ``"boxes"`` (``evaluate``, class-discrimination studies: the
built-in set or annotations), ``"labels"`` (the analysis commands, ``train``: also class folders,
CIFAR and lists with a ``label`` column), ``"images"`` (trust studies: a folder is every image
below it). Labels map onto the model's classes with :class:`camscope.data.classes.ClassMapper`;
``class_names=None`` means there is no model yet (``train``): the data's own classes are the
classes. Labels that map to no class follow :attr:`DataOptions.unmapped`.

Example:
    >>> data = read_data("builtin:20", ["cat", "cup", "motorcycle", "rocket"])  # doctest: +SKIP
    >>> data.classes, data.items[0].label  # doctest: +SKIP
    (['cat', 'cup', 'rocket', 'motorcycle'], 'cup')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError, UsageError
from .dataset import LabelledData, LazySamples, Sample, take
from .inputs import with_stems
from .spec import BUILTIN_SEED, DataOptions, is_builtin, parse_data

if TYPE_CHECKING:
    from .classes import ClassMapper

NEEDS = ("boxes", "labels", "images")


def read_data(
    data: str,
    class_names: Sequence[str] | None = (),
    options: DataOptions | None = None,
    *,
    need: str = "labels",
    seed: int | None = None,
    size: int = 224,
    stream: str = "eval",
) -> LabelledData:
    """Read ``data`` (see :mod:`camscope.data.spec` for the grammar).

    Args:
        data: the data spec.
        class_names: the model's class names (empty: ImageNet-1k; None: no model, the data's
            own classes are the classes).
        options: images folder, class map, what to do with unmapped labels, outside paths.
        need: ``"boxes"``, ``"labels"`` or ``"images"`` (see the module docstring).
        seed: the built-in set's seed when ``builtin:N:SEED`` names none (default 0).
        size: the built-in set's image side.
        stream: the built-in set's stream, ``"eval"`` or ``"train"``.
    """
    from .classes import ClassMapper, read_class_map

    options = options or DataOptions()
    options.check()
    if need not in NEEDS:
        raise UsageError(f"need must be one of {', '.join(NEEDS)}; got {need!r}")
    spec = parse_data(data)
    names = None if class_names is None else list(class_names) or None
    mapper = ClassMapper(names)
    if options.class_map:
        mapper = ClassMapper(names, read_class_map(options.class_map, mapper))
    if spec.kind == "builtin":
        chosen = spec.seed if spec.seed is not None else BUILTIN_SEED if seed is None else seed
        return _builtin(spec.count, chosen, size, stream, class_names, mapper, options.unmapped)
    path = spec.path if spec.path is not None else Path(spec.text)
    if spec.kind == "folder" and need == "images" and options.images is None:
        return _plain_folder(path)
    annotated = spec.kind == "annotations" or (
        spec.kind == "folder" and (options.images is not None or is_annotated(spec.text))
    )
    if annotated or need == "boxes":
        if spec.kind not in ("annotations", "folder"):
            raise DatasetError(
                f"--data {spec.text!r}: this command needs object boxes; pass annotations (a "
                ".csv, COCO .json or VOC .xml file, or a folder in a common layout) or builtin:N"
            )
        from .annotations import read_dataset

        if class_names is None:
            raise DatasetError(
                f"--data {spec.text!r} holds annotations, which are read onto a model's classes; "
                "to train, pass class folders, a list with a label column, cifar10:DIR or builtin:N"
            )
        return read_dataset(
            path,
            mapper,
            images=options.images,
            unmapped=options.unmapped,
            allow_outside=options.allow_outside,
        )
    if spec.kind in ("cifar10", "cifar100"):
        from .cifar import read_cifar

        return _mapped(read_cifar(spec.kind, path), class_names, mapper, options)
    if spec.kind == "list":
        from .lists import list_images

        found = list_images(path)
        if need == "labels" and not found.classes:
            raise DatasetError(
                f"{spec.text!r} has no 'label' column; this command needs each image's class"
            )
        return _mapped(found, class_names, mapper, options)
    from .folders import scan_class_folders

    return _mapped(scan_class_folders(path), class_names, mapper, options)


def is_annotated(data: str, images: str | None = None) -> bool:
    """Whether ``data`` names annotated data (``builtin[:N]``, an annotation file, or a folder in
    a layout :func:`camscope.data.layouts.find_annotations` knows) rather than images or class
    folders."""
    from .layouts import find_annotations

    text = data.strip()
    if is_builtin(text) or text.startswith("builtin:"):
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


def _unknown_labels(labels: list[str], where: str) -> DatasetError:
    return DatasetError(
        f"{len(labels)} class(es) in {where} are not classes of the model: "
        f"{', '.join(map(repr, labels))}. Name them after the model's classes (names, ImageNet "
        "synset ids such as n02123045, indices), map them with --class-map FILE, or leave them "
        "out with --unmapped skip"
    )


def _class_ids(
    labels: Sequence[str], class_names: Sequence[str] | None, mapper: ClassMapper
) -> dict[str, tuple[int, ...]]:
    """label -> accepted model classes (its own index when there is no model)."""
    if class_names is None:
        return {label: (i,) for i, label in enumerate(labels)}
    return {label: mapper.lookup(label) or () for label in labels}


def _mapped(
    data: LabelledData,
    class_names: Sequence[str] | None,
    mapper: ClassMapper,
    options: DataOptions,
) -> LabelledData:
    """The labels of class folders, CIFAR or a list mapped onto the model's classes."""
    from .lists import ArrowSamples

    if not data.classes or (class_names is None and data.class_ids):
        return data
    ids = _class_ids(data.classes, class_names, mapper)
    unknown = [name for name, mapped in ids.items() if not mapped]
    folders = data.kind == "folders"
    errors: dict[str, str] = {}
    if unknown and options.unmapped == "error":
        if not folders or options.unmapped_folders == "error":
            where = f"the class folders of {data.root!r}" if folders else data.description
            raise _unknown_labels(unknown, where)
        for name in unknown:  # their images fail one by one, each with the reason
            try:
                mapper.map(name)
            except DatasetError as err:
                errors[name] = f"class folder {name!r}: {err}"
        if len(unknown) == len(ids):
            raise DatasetError(
                f"no class folder of {data.root!r} names a class of the model; "
                f"{next(iter(errors.values()))}. Map the folder names with --class-map FILE"
            )
    items, notes = data.items, list(data.notes)
    if unknown and options.unmapped == "skip":
        positions = [k for k, s in enumerate(items) if ids.get(str(s.label))]
        notes.append(
            f"skipped {len(items) - len(positions)} image(s) "
            + ("in class folders that name" if folders else "whose class names")
            + f" no class of the model ({', '.join(sorted(unknown))})"
        )
        items = take(items, positions)
    if isinstance(items, ArrowSamples):
        items.class_ids = ids
    else:
        items = [
            replace(s, class_ids=ids[str(s.label)], error=errors.get(str(s.label))) for s in items
        ]
    classes = [c for c in data.classes if options.unmapped == "keep" or ids[c]]
    return replace(
        data, items=items, classes=classes, class_ids={c: ids[c] for c in classes}, notes=notes
    )


def _plain_folder(root: Path) -> LabelledData:
    """Every image below ``root``, unlabelled; ids relative to it."""
    from .inputs import collect_inputs

    sources = collect_inputs([str(root)])
    if not sources:
        raise DatasetError(f"no images in {str(root)!r}")
    samples = [Sample(Path(s).relative_to(root).as_posix(), s) for s in sources]
    return LabelledData(
        with_stems(samples), kind="folder", description=f"images in {root}", root=str(root)
    )


def _builtin(
    count: int,
    seed: int,
    size: int,
    stream: str,
    class_names: Sequence[str] | None,
    mapper: ClassMapper,
    unmapped: str,
) -> LabelledData:
    from .synthetic import OBJECTS, SyntheticBenchmark

    kinds = [o.name for o in OBJECTS]
    ids: dict[str, tuple[int, ...]] | None = None
    # ImageNet models accept every close class of an object; other models (trained on the
    # built-in set by camscope train) name their classes after the objects.
    if class_names is None:
        ids = _class_ids(sorted(kinds), None, mapper)
    elif len(class_names) not in (0, 1000):
        ids = _class_ids(kinds, class_names, mapper)
        unknown = [name for name, found in ids.items() if not found]
        if unknown and unmapped != "keep":
            raise _unknown_labels(unknown, "the built-in set")
    one_object = stream == "train"
    bench = SyntheticBenchmark(
        count,
        size=size,
        seed=seed,
        class_ids=ids,
        stream=stream,
        two_object_fraction=0.0 if one_object else 0.3,
    )
    classes = sorted(kinds) if class_names is None else kinds
    return LabelledData(
        LazySamples(bench.__getitem__, bench.ids()),
        classes,
        {o.name: bench.class_ids.get(o.name, o.class_ids) for o in OBJECTS},
        "builtin",
        f"builtin:{count} (seed {seed}" + (", training stream)" if one_object else ")"),
        details={"generator_seed": seed, "stream": stream, "rendered_size": size},
    )

"""Where a data set keeps its annotations and its images: the common folder layouts.

:func:`find_annotations` looks at a ``--data`` folder and says which annotation format it holds
and which folders its images may be in (the layouts understood, folder names in any case:
docs/architecture.md, "Data: the one grammar"). ``--images DIR`` replaces the image folders of
any layout. Nothing found is an error that lists every place that was looked at.

Each annotation format lives in a file of its own (:mod:`.voc` for PASCAL VOC and Oxford-IIIT
Pet, :mod:`.coco`, :mod:`.csv_boxes`) and joins with :func:`register_format`: how to find its
files in a folder, which file suffix it reads, where its images are and how to parse one file
into :class:`~camscope.data.dataset.Sample` records. A new layout is one such file (imported in
:mod:`.annotations`) plus its test; :func:`find_annotations` and
:func:`camscope.data.annotations.read_dataset` read the registry.

:func:`safe_relative` refuses image names in annotations that leave the folder they are joined to
(``../outside.jpg``, absolute paths), unless the caller opts in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..errors import DatasetError

if TYPE_CHECKING:
    from .checks import Box
    from .dataset import Sample

#: Image file suffixes tried when an annotation names an image without (or with another) suffix.
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".JPEG",
    ".JPG",
    ".png",
    ".PNG",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
)

#: One file's samples: ``parse(file, image_dirs, allow_outside)`` (labels not yet mapped).
Parse = Callable[[Path, list[Path], bool], "list[Sample]"]
#: The candidates of one format in a folder: ``(priority, Layout)``; the lowest priority wins.
Find = Callable[[Path], "list[tuple[int, Layout]]"]

#: Priority of annotation files right in the data folder, which must be alone there.
TOP_LEVEL = 0


@dataclass(frozen=True)
class Layout:
    """What :func:`find_annotations` found.

    Attributes:
        kind: the registered format's name (``"csv"``, ``"coco"``, ``"voc"``, ``"pet"``).
        files: the annotation file(s).
        image_dirs: folders an image named in an annotation is looked for in, in order.
        description: one line for messages and the report.
    """

    kind: str
    files: list[Path]
    image_dirs: list[Path] = field(default_factory=list)
    description: str = ""

    def parse(self, allow_outside: bool = False) -> list[Sample]:
        """Every file's samples, labels not yet mapped."""
        reader = _FORMATS[self.kind]
        return [s for f in self.files for s in reader.parse(f, self.image_dirs, allow_outside)]


@dataclass(frozen=True)
class AnnotationFormat:
    """A registered annotation format (see the module docstring)."""

    name: str
    parse: Parse
    find: Find
    suffix: str | None
    image_dirs: Callable[[Path], list[Path]]
    looked_for: str
    title: str


_FORMATS: dict[str, AnnotationFormat] = {}


def register_format(
    name: str,
    *,
    find: Find,
    suffix: str | None,
    image_dirs: Callable[[Path], list[Path]],
    looked_for: str,
    title: str,
) -> Callable[[Parse], Parse]:
    """Decorator that registers ``parse`` as the reader of annotation format ``name``.

    Args:
        find: a folder's candidates of this format (:data:`Find`).
        suffix: the suffix of an annotation file passed directly as ``--data`` (None: none).
        image_dirs: for such a file, the folders its images may be in.
        looked_for: where the format looks, for the message when nothing is found.
        title: the format's name in messages (``"VOC"``).
    """

    def decorate(parse: Parse) -> Parse:
        _FORMATS[name] = AnnotationFormat(name, parse, find, suffix, image_dirs, looked_for, title)
        return parse

    return decorate


def subdir(folder: Path | None, name: str) -> Path | None:
    """The child folder called ``name`` in any letter case (``Annotations`` or ``annotations``)."""
    if folder is None:
        return None
    exact = folder / name
    if exact.is_dir():
        return exact
    try:
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name.lower() == name.lower():
                return child
    except OSError:
        return None
    return None


def unique_dirs(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(p for p in paths if p is not None))


def files_in(folder: Path | None, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder is not None else []


def several_files(where: Path, files: list[Path]) -> DatasetError:
    names = ", ".join(p.name for p in files)
    return DatasetError(
        f"{where}: several annotation files ({names}); pass the one to use as --data"
    )


def find_annotations(root: str | Path, images: str | Path | None = None) -> Layout:
    """The annotation format and files of a ``--data`` file or folder, and its image folders.

    Args:
        root: an annotation file (``.csv``, ``.json``, ``.xml``) or a data folder.
        images: ``--images DIR``: look for images there only.

    Raises:
        DatasetError: nothing found (the message lists what was looked for), or several candidate
            files.
    """
    path = Path(root).expanduser()
    override = [Path(images).expanduser()] if images is not None else None
    if override is not None and not override[0].is_dir():
        raise DatasetError(f"--images {override[0]}: no such folder")
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        by_suffix = {f.suffix: f for f in _FORMATS.values() if f.suffix}
        fmt = by_suffix.get(path.suffix.lower())
        if fmt is None:
            known = ", ".join(f"{f.title} {f.suffix}" for f in by_suffix.values())
            raise DatasetError(f"{path}: unknown annotation format (use {known})")
        dirs = override or fmt.image_dirs(path)
        return Layout(fmt.name, [path], dirs, f"{fmt.title} {path}")
    found = sorted((c for fmt in _FORMATS.values() for c in fmt.find(path)), key=lambda c: c[0])
    top = [f for priority, layout in found if priority == TOP_LEVEL for f in layout.files]
    if len(top) > 1:
        raise several_files(path, top)
    if not found:
        looked = "; ".join(f.looked_for for f in _FORMATS.values())
        raise DatasetError(
            f"{path}: no annotations found; looked for {looked}. Pass an annotation file as "
            "--data, or use --data builtin:N for the built-in benchmark"
        )
    layout = found[0][1]
    return Layout(layout.kind, layout.files, override or layout.image_dirs, layout.description)


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative(name: str, where: str, allow_outside: bool = False) -> str:
    """``name`` (an image path written in an annotation) if it stays inside the folder it is
    joined to; absolute paths and ``..`` that climb out are refused unless ``allow_outside``.

    >>> safe_relative("img/a.jpg", "a.xml")
    'img/a.jpg'
    """
    if allow_outside:
        return name
    posix = PurePosixPath(name.replace("\\", "/"))
    normal = os.path.normpath(str(posix)) if str(posix) else ""
    if posix.is_absolute() or _DRIVE.match(name) or normal == ".." or normal.startswith("../"):
        raise DatasetError(
            f"{where}: image path {name!r} leaves the data folder; refused so that annotations "
            "cannot read files elsewhere (pass --allow-outside-paths if you trust them)"
        )
    return name


def find_image(dirs: list[Path], name: str) -> Path | None:
    """The first ``dir / name`` that is a file, else the first ``dir / (stem + suffix)`` with a
    known image suffix; None when no folder holds it."""
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    try:
        stem = str(PurePosixPath(name.replace("\\", "/")).with_suffix(""))
    except ValueError:  # no file name in it ("", "dir/")
        return None
    for folder in dirs:
        for suffix in IMAGE_SUFFIXES:
            cand = folder / (stem + suffix)
            if cand.is_file():
                return cand
    return None


def image_path(name: str, dirs: list[Path], where: str, allow_outside: bool) -> Path:
    """The file an annotation's image name means (refused if it leaves the data folder); the
    first folder's path when no folder holds it (the sample then fails alone when loaded)."""
    name = safe_relative(name, where, allow_outside)
    return find_image(dirs, name) or dirs[0] / name


def make_sample(
    id_: str,
    path: Path,
    items: list[tuple[str, Box, str]],
    size: tuple[int, int] | None,
    annotation: str,
) -> Sample:
    """A sample with unmapped objects ``(label, box, where)``; boxes reaching outside a known
    size are clipped (counted in ``extra["clipped"]``), one wholly outside is refused."""
    from .checks import box_in_image
    from .dataset import GroundTruth, Sample

    objects, clipped = [], 0
    for label, raw, where in items:
        box, was_clipped = box_in_image(raw, where, size)
        clipped += was_clipped
        objects.append(GroundTruth(label, (), box))
    extra = {"annotation": annotation, "clipped": clipped}
    return Sample(id_, str(path), objects=tuple(objects), size=size, extra=extra)

"""Where a data set keeps its annotations and its images: the common folder layouts.

:func:`find_annotations` looks at a ``--data`` folder and says which annotation format it holds
and which folders its images may be in. Layouts understood (folder names in any case):

============================  =====================================  ================================
layout                        annotations                            images looked for in
============================  =====================================  ================================
CSV                           ``DATA/*.csv`` (one)                   beside the CSV
COCO                          ``DATA/*.json`` or                     beside the JSON, ``images/``,
                              ``DATA/annotations/*.json`` (one, or   ``DATA/``, ``DATA/images/`` and
                              one ``instances_*.json``)              ``DATA/<split>/`` (``val2017``
                                                                     from ``instances_val2017.json``)
PASCAL VOC                    ``DATA/*.xml``,                        beside the XML,
                              ``DATA/Annotations/*.xml``             ``DATA/JPEGImages/``,
                                                                     ``DATA/images/``, ``DATA/``
Oxford-IIIT Pet               ``DATA/annotations/xmls/*.xml``        ``DATA/images/``
============================  =====================================  ================================

``--images DIR`` replaces the image folders of any layout. Nothing found is an error that lists
every place that was looked at.

:func:`safe_relative` refuses image names in annotations that leave the folder they are joined to
(``../outside.jpg``, absolute paths), unless the caller opts in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import DatasetError

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

LOOKED_FOR = (
    "*.csv, *.json (COCO) and *.xml (VOC) in the folder; Annotations/*.xml or annotations/*.xml "
    "(VOC); annotations/xmls/*.xml (Oxford-IIIT Pet); annotations/*.json (COCO)"
)


@dataclass(frozen=True)
class Layout:
    """What :func:`find_annotations` found.

    Attributes:
        kind: ``"csv"``, ``"coco"``, ``"voc"`` or ``"pet"``.
        files: the annotation file(s).
        image_dirs: folders an image named in an annotation is looked for in, in order.
        description: one line for messages and the report.
    """

    kind: str
    files: list[Path]
    image_dirs: list[Path] = field(default_factory=list)
    description: str = ""


def _subdir(folder: Path, name: str) -> Path | None:
    """The child folder called ``name`` in any letter case (``Annotations`` or ``annotations``)."""
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


def _unique(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(p for p in paths if p is not None))


def _glob(folder: Path | None, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder is not None else []


def coco_image_dirs(json_path: Path) -> list[Path]:
    """Folders the images of a COCO file may be in (see the module table)."""
    here = json_path.parent
    dirs = [here, here / "images"]
    if here.name.lower() == "annotations":
        root = here.parent
        dirs += [root, root / "images"]
        split = re.sub(r"^(instances|person_keypoints|captions)_", "", json_path.stem)
        if split and split != json_path.stem:
            dirs.append(root / split)
            dirs.append(root / "images" / split)
    return _unique(dirs)


def voc_image_dirs(xml_folder: Path) -> list[Path]:
    """Folders the images of VOC XML files in ``xml_folder`` may be in."""
    up = xml_folder.parent
    return _unique([xml_folder, up / "JPEGImages", up / "images", up])


def _pick_coco(files: list[Path], where: Path) -> Path:
    if len(files) == 1:
        return files[0]
    instances = [p for p in files if p.name.startswith("instances_")]
    if len(instances) == 1:
        return instances[0]
    raise DatasetError(
        f"{where}: several annotation files ({', '.join(p.name for p in files)}); pass the one to "
        "use as --data"
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
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return Layout("csv", [path], override or [path.parent], f"CSV {path}")
        if suffix == ".json":
            return Layout("coco", [path], override or coco_image_dirs(path), f"COCO {path}")
        if suffix == ".xml":
            return Layout("voc", [path], override or voc_image_dirs(path.parent), f"VOC {path}")
        raise DatasetError(f"{path}: unknown annotation format (use .csv, COCO .json or VOC .xml)")
    csvs, jsons = _glob(path, "*.csv"), _glob(path, "*.json")
    if len(csvs) + len(jsons) > 1:
        raise DatasetError(
            f"{path}: several annotation files ({', '.join(p.name for p in csvs + jsons)}); "
            "pass the one to use as --data"
        )
    if csvs:
        return Layout("csv", csvs, override or [path], f"CSV {csvs[0]}")
    if jsons:
        return Layout("coco", jsons, override or coco_image_dirs(jsons[0]), f"COCO {jsons[0]}")
    xmls = _glob(path, "*.xml")
    if xmls:
        return Layout("voc", xmls, override or voc_image_dirs(path), f"VOC XML in {path}")
    ann = _subdir(path, "annotations")
    pet = _glob(_subdir(ann, "xmls") if ann else None, "*.xml")
    if pet:
        dirs = _unique([path / "images", pet[0].parent, path])
        return Layout("pet", pet, override or dirs, f"Oxford-IIIT Pet XML in {pet[0].parent}")
    xmls = _glob(ann, "*.xml")
    if xmls and ann is not None:
        return Layout("voc", xmls, override or voc_image_dirs(ann), f"VOC XML in {ann}")
    jsons = _glob(ann, "*.json")
    if jsons and ann is not None:
        chosen = _pick_coco(jsons, ann)
        return Layout("coco", [chosen], override or coco_image_dirs(chosen), f"COCO {chosen}")
    raise DatasetError(
        f"{path}: no annotations found; looked for {LOOKED_FOR}. Pass an annotation file as "
        "--data, or use --data builtin:N for the built-in benchmark"
    )


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

"""Image-classification folders: one subfolder per class (torchvision's ``ImageFolder`` layout).

``root/cat/001.jpg, root/dog/xyz.png, ...``: the class names are the subfolder names in sorted
order, as in torchvision, whose scanning (:func:`torchvision.datasets.folder.find_classes`) this
uses. Image files are those whose extension is in :data:`camscope.io.IMAGE_EXTENSIONS` (any case),
found recursively below each class folder; nothing is decoded here, so a corrupt file is found
when it is loaded (:func:`camscope.io.load_image` names it), not when the folder is scanned.

:func:`camscope.data.read.read_data` reads them as labelled samples: training takes the class
names as the model's classes (and refuses empty class folders); the other commands map them onto
a model's classes with :class:`camscope.data.classes.ClassMapper`.

Example:
    >>> data = scan_class_folders("pets")  # doctest: +SKIP
    >>> data.classes, data.items[0].id, data.items[0].label  # doctest: +SKIP
    (['cat', 'dog'], 'cat/001.jpg', 'cat')
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..io.decode import has_image_extension
from .dataset import LabelledData, Sample
from .inputs import images_below, with_stems


def scan_class_folders(root: str | Path) -> LabelledData:
    """Scan ``root`` as one subfolder per class: each image labelled with its folder's name, its
    id the path below ``root``; class folders without images are left out and listed in
    :attr:`LabelledData.skipped` (labels are not mapped onto a model's classes here).

    Raises:
        DatasetError: ``root`` is not a folder or has no class folder with images.
    """
    from torchvision.datasets.folder import find_classes

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"data folder {str(folder)!r} does not exist or is not a folder")
    try:
        names, _ = find_classes(str(folder))
    except FileNotFoundError:
        names = []
    samples: list[Sample] = []
    skipped: list[str] = []
    for name in names:
        files = [Path(p) for p in images_below(folder / name, follow_links=True)]
        samples.extend(Sample(p.relative_to(folder).as_posix(), str(p), name) for p in files)
        if not files:
            skipped.append(name)
    classes = [name for name in names if name not in skipped]
    if not classes:
        loose = [p.name for p in folder.iterdir() if p.is_file() and has_image_extension(p.name)]
        hint = (
            f"; it holds images directly ({', '.join(loose[:3])}...): put them in one subfolder "
            "per class"
            if loose
            else f" (one subfolder per class, e.g. {folder.name}/cat/*.jpg)"
        )
        empty = f" ({', '.join(skipped)} hold no images)" if skipped else ""
        raise DatasetError(
            f"data folder {str(folder)!r} has no class folder with images{empty}{hint}"
        )
    return LabelledData(
        with_stems(samples),
        classes,
        kind="folders",
        description=f"class folders {folder}",
        skipped=[(name, "class folder without images") for name in skipped],
        root=str(folder.resolve()),
        listing=str(folder.resolve()),
    )

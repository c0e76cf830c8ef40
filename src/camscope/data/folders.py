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
    >>> data.classes, data.items[0]  # doctest: +SKIP
    (['cat', 'dog'], (PosixPath('pets/cat/001.jpg'), 0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..io.decode import has_image_extension
from .inputs import images_below


@dataclass(frozen=True)
class FolderDataset:
    """A scanned class-folder data set.

    Attributes:
        root: the folder.
        classes: class names (subfolder names), sorted; the index of a name is its label.
        items: ``(image path, class index)`` in sorted path order.
        empty: class folders that hold no image (left out).
    """

    root: Path
    classes: list[str]
    items: list[tuple[Path, int]]
    empty: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        out = dict.fromkeys(self.classes, 0)
        for _, label in self.items:
            out[self.classes[label]] += 1
        return out


def scan_class_folders(root: str | Path) -> FolderDataset:
    """Scan ``root`` as one subfolder per class; class folders without images are left out and
    listed in :attr:`FolderDataset.empty`.

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
    classes: list[str] = []
    items: list[tuple[Path, int]] = []
    skipped: list[str] = []
    for name in names:
        files = [Path(p) for p in images_below(folder / name, follow_links=True)]
        if not files:
            skipped.append(name)
            continue
        items.extend((path, len(classes)) for path in files)
        classes.append(name)
    if not classes:
        loose = [p.name for p in folder.iterdir() if p.is_file() and has_image_extension(p.name)][
            :3
        ]
        hint = (
            f"; it holds images directly ({', '.join(loose)}...): put them in one subfolder "
            "per class"
            if loose
            else f" (one subfolder per class, e.g. {folder.name}/cat/*.jpg)"
        )
        empty = f" ({', '.join(skipped)} hold no images)" if skipped else ""
        raise DatasetError(
            f"data folder {str(folder)!r} has no class folder with images{empty}{hint}"
        )
    return FolderDataset(folder, classes, items, skipped)

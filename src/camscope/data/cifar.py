"""CIFAR-10 and CIFAR-100 from their python-version folders (Krizhevsky, 2009).

``cifar10:DIR`` reads ``DIR/cifar-10-batches-py/`` (or ``DIR`` itself when it holds the files):
``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. ``cifar100:DIR`` reads
``DIR/cifar-100-python/``: ``train``, ``test`` and ``meta``, with the 100 fine labels or, with
``labels="coarse"``, the 20 superclasses. These are the folders torchvision's
``datasets.CIFAR10(root=DIR, download=True)`` writes; ``download=True`` asks torchvision to fetch
them (a network connection is needed; nothing is downloaded otherwise).

Each image is a :class:`~camscope.data.dataset.Sample` holding its pixels in memory, labelled
with its class (:func:`read_cifar`). The files are pickles. Unpickling can run code, so they are
read with an unpickler that only accepts what a CIFAR batch holds (dicts, lists, strings, numbers
and numpy arrays).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, UsageError
from .dataset import ArrayImages, LabelledData

_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_TRAIN = {"cifar10": [f"data_batch_{i}" for i in range(1, 6)], "cifar100": ["train"]}
_TEST = {"cifar10": ["test_batch"], "cifar100": ["test"]}
_META = {"cifar10": "batches.meta", "cifar100": "meta"}
_URL = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR pickle as a dict with ``str`` keys (python-2 pickles decoded as latin-1)."""
    try:
        with path.open("rb") as handle:
            data = _CifarUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise DatasetError(f"CIFAR file {str(path)!r} is missing") from None
    except Exception as err:
        raise DatasetError(f"CIFAR file {str(path)!r} is not a CIFAR batch ({err})") from err
    if not isinstance(data, dict):
        raise DatasetError(f"CIFAR file {str(path)!r} holds {type(data).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def find_folder(kind: str, root: str | Path, download: bool) -> Path:
    """The folder holding the batch files, downloaded by torchvision when asked."""
    base = Path(root).expanduser()
    for candidate in (base / _FOLDERS[kind], base):
        if (candidate / _META[kind]).is_file():
            return candidate
    if download:
        import torchvision.datasets as tvd

        cls = tvd.CIFAR10 if kind == "cifar10" else tvd.CIFAR100
        try:
            cls(root=str(base), train=True, download=True)
        except Exception as err:
            raise DatasetError(
                f"could not download {kind} into {str(base)!r} ({err}); without a network, "
                f"fetch {_URL[kind]} elsewhere and extract it there"
            ) from err
        return base / _FOLDERS[kind]
    raise DatasetError(
        f"no {kind} python folder in {str(base)!r} (expected {_FOLDERS[kind]}/{_META[kind]}); "
        f"pass --download on a machine with network access, or extract {_URL[kind]} there"
    )


def _read_split(folder: Path, files: list[str], key: str) -> tuple[np.ndarray, list[int]]:
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for name in files:
        batch = read_batch(folder / name)
        if "data" not in batch or key not in batch:
            raise DatasetError(
                f"CIFAR file {str(folder / name)!r} lacks 'data' or {key!r} (has {sorted(batch)})"
            )
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch[key]) != data.shape[0]:
            raise DatasetError(
                f"CIFAR file {str(folder / name)!r}: expected N x 3072 pixels and N labels, got "
                f"{list(data.shape)} and {len(batch[key])}"
            )
        arrays.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(int(v) for v in batch[key])
    return np.ascontiguousarray(np.concatenate(arrays)), labels


def read_cifar(
    kind: str,
    root: str | Path,
    split: str = "train",
    *,
    labels: str = "fine",
    download: bool = False,
) -> LabelledData:
    """CIFAR's training batches (``split="train"``) or its test batch (``"test"``), with the fine
    labels or, for CIFAR-100 with ``labels="coarse"``, the 20 superclasses; each image's class
    index is its accepted class (``class_ids``)."""
    if labels == "coarse" and kind != "cifar100":
        raise UsageError("--labels coarse applies to cifar100 (CIFAR-10 has no superclasses)")
    folder = find_folder(kind, root, download)
    meta = read_batch(folder / _META[kind])
    if kind == "cifar10":
        key, names_key = "labels", "label_names"
    else:
        key = "coarse_labels" if labels == "coarse" else "fine_labels"
        names_key = "coarse_label_names" if labels == "coarse" else "fine_label_names"
    classes = [str(c) for c in meta.get(names_key, [])]
    if len(classes) < 2:
        raise DatasetError(f"{str(folder / _META[kind])!r} lists no {names_key}")
    images, targets = _read_split(folder, (_TRAIN if split == "train" else _TEST)[kind], key)
    bad = sorted({t for t in targets if not 0 <= t < len(classes)})
    if bad:
        raise DatasetError(f"{kind} labels {bad[:5]} are outside 0..{len(classes) - 1}")
    names = [f"{kind}-{split}-{i:05d}" for i in range(len(targets))]
    arrays = ArrayImages(images, names, targets, classes)
    class_ids: dict[str, tuple[int, ...]] = {c: (i,) for i, c in enumerate(classes)}
    return LabelledData(
        arrays.samples(),
        classes,
        class_ids,
        kind,
        f"{kind} {split} batch in {folder}",
        root=str(folder),
        listing=str(folder),
        details={"source": f"{kind}:{folder}", "labels": labels, "native_size": 32},
    )

"""Tiny data sets written by the tests themselves: class folders and CIFAR python folders.

Each class has its own colour cast, so a tiny network learns the classes in a few steps.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40))


def class_image(label: int, index: int, size: int = 16) -> np.ndarray:
    """A noisy ``(size, size, 3)`` uint8 image tinted with class ``label``'s colour."""
    rng = np.random.default_rng([label, index])
    noise = rng.integers(0, 60, size=(size, size, 3))
    return np.clip(np.asarray(COLOURS[label]) + noise - 30, 0, 255).astype(np.uint8)


def write_image_folder(
    root: Path, classes: tuple[str, ...] = ("ant", "bee"), per_class: int = 10, size: int = 16
) -> Path:
    """``root/<class>/<i>.png`` with ``per_class`` images per class."""
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(label, i, size)).save(folder / f"{i:03d}.png")
    return root


def _dump(path: Path, data: dict) -> None:
    with path.open("wb") as handle:
        pickle.dump(data, handle)


def write_cifar10(root: Path, per_batch: int = 8) -> Path:
    """A CIFAR-10 python folder: 5 training batches and a test batch of ``per_batch`` images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"class{i}" for i in range(10)]
    _dump(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    for b, file in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        labels = [(b + i) % 10 for i in range(per_batch)]
        pixels = np.stack([class_image(lab % 4, b * 100 + i, 32) for i, lab in enumerate(labels)])
        data = pixels.transpose(0, 3, 1, 2).reshape(per_batch, -1)
        _dump(folder / file, {"data": data, "labels": labels, "batch_label": file})
    return root


def write_cifar100(root: Path, count: int = 40) -> Path:
    """A CIFAR-100 python folder whose 100 fine classes fall into 20 superclasses (fine // 5)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )
    for file, offset in (("train", 0), ("test", 1)):
        fine = [(i * 5 + offset) % 100 for i in range(count)]
        pixels = np.stack([class_image(f % 4, i, 32) for i, f in enumerate(fine)])
        _dump(
            folder / file,
            {
                "data": pixels.transpose(0, 3, 1, 2).reshape(count, -1),
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
            },
        )
    return root


def tiny_config(data: Any, out: Path, **changes: Any) -> Any:
    """The training tests' run: a GapNet of width 4 and depth 1 at 16 px, 4 epochs of batches of
    8, a fifth of each class for validation (``changes``: other
    :class:`camscope.training.TrainConfig` fields)."""
    from camscope.training import TrainConfig

    settings = {"arch": "gapnet", "arch_options": {"width": 4, "depth": 1}, "image_size": 16}
    settings.update(epochs=4, batch_size=8, val_split=0.2, seed=0)
    return TrainConfig(data=str(data), out=str(out), **{**settings, **changes})


def tiny_run(out: Path, data: str = "builtin:24", **changes: Any) -> Path:
    """A run folder in ``out``: :func:`tiny_config` for one epoch at 32 px on ``data``, a quarter
    of each class for validation."""
    from camscope.training import train

    train(tiny_config(data, out, **{"image_size": 32, "epochs": 1, "val_split": 0.25, **changes}))
    return out

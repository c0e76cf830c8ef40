"""What a run reports: ``config.json``, the human-readable ``metrics.csv``, ``curves.png``,
``confusion.png`` and ``summary.json``, and :class:`TrainResult`, read back from the run folder.

``metrics.csv`` has one row per finished epoch, ``epoch, train_loss, train_acc, val_loss, val_acc,
lr, seconds``; it is rewritten from the checkpoint's history after every epoch (write aside, then
rename), so a resumed run never lists an epoch twice.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..outputs import camscope_version, write_atomic, write_json
from ..viz import confusion_png

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def write_metrics(path: Path, history: Sequence[dict[str, float]]) -> None:
    """``metrics.csv`` from the history rows (floats with 6 significant digits, seconds 0.01)."""
    lines = [",".join(COLUMNS)]
    for row in history:
        cells = [str(int(row["epoch"]))]
        cells += [f"{row[c]:.6g}" for c in COLUMNS[1:-1]]
        cells.append(f"{row['seconds']:.2f}")
        lines.append(",".join(cells))
    write_atomic(path, "\n".join(lines) + "\n")


def per_class_accuracy(
    confusion: Sequence[Sequence[int]], classes: Sequence[str]
) -> dict[str, Any]:
    """``{class: {"n": images, "accuracy": share correct}}`` from a confusion matrix (rows = true;
    none without one)."""
    out: dict[str, Any] = {}
    for i, (name, row) in enumerate(zip(classes, confusion)):
        n = int(sum(row))
        out[name] = {"n": n, "accuracy": float(row[i] / n) if n else None}
    return out


def plot_curves(path: Path, history: Sequence[dict[str, float]], title: str) -> None:
    """Loss and accuracy per epoch, training and validation."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8.0, 3.2), dpi=100)  # no layout engine: it cost ~1 s per figure
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "acc", "accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="training")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    acc_ax.set_ylim(0.0, 1.0)
    loss_ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.86, wspace=0.25)
    write_atomic(path, lambda handle: fig.savefig(handle, format="png"))


def plot_confusion(
    path: Path, confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str
) -> None:
    """The confusion matrix (:func:`camscope.viz.confusion_png`), each row coloured by the share
    of its true class."""
    write_atomic(path, confusion_png(confusion, classes, classes, title))


@dataclass
class TrainResult:
    """A run folder's outcome.

    Attributes:
        out: the run folder (``load_model(out)`` loads the best epoch).
        status: ``"finished"``, ``"stopped early"`` or ``"paused"`` (``stop_after`` or fewer
            epochs than planned; ``--resume`` continues).
        epochs_done / epochs_planned: finished and planned epochs.
        best_epoch: the epoch whose weights are in ``model.safetensors``.
        best_val_acc / best_val_loss: its validation accuracy and loss.
        history: the ``metrics.csv`` rows.
        summary: ``summary.json``.
    """

    out: Path
    status: str
    epochs_done: int
    epochs_planned: int
    best_epoch: int
    best_val_acc: float
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def write_config(out: Path, config: dict[str, Any]) -> None:
    """``config.json``: ``config`` and the library versions."""
    import timm
    import torch
    import torchvision

    versions = {
        "camscope": camscope_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }
    write_json(out / "config.json", {**config, "versions": versions})


def read_result(out: Path) -> TrainResult:
    """The :class:`TrainResult` of the run in ``out`` (from ``summary.json``)."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    best = summary.get("best") or {}
    return TrainResult(
        out=out,
        status=str(summary["status"]),
        epochs_done=int(summary["epochs_done"]),
        epochs_planned=int(summary["epochs_planned"]),
        best_epoch=int(best.get("epoch", 0)),
        best_val_acc=float(best.get("val_acc", float("nan"))),
        best_val_loss=float(best.get("val_loss", float("nan"))),
        history=list(summary.get("history", [])),
        summary=summary,
    )

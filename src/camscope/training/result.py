"""What a finished (or paused) run reports: :class:`TrainResult`, read back from its run folder."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..outputs import camscope_version, write_json


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

"""The run's resumable state (``last.ckpt``) and the best epoch's weights (``model.safetensors``).

``last.ckpt`` is a ``torch.save`` dict of tensors and plain Python values only, read back with
``weights_only=True``: the model, optimizer, scheduler and AMP-scaler state dicts, the RNG states
(torch, CUDA, numpy, Python), the number of finished epochs, the best epoch so far, the early-stopping
counter, every metrics row and the files skipped so far. Both files are written beside the target
and renamed over it (:func:`camscope.outputs.write_atomic`), so an interruption never leaves
half a file.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..outputs import write_atomic

CHECKPOINT = "last.ckpt"
BEST_WEIGHTS = "model.safetensors"


@dataclass
class Progress:
    """Where a run stands after its last finished epoch.

    Attributes:
        epoch: finished epochs.
        best_epoch / best_value: the best epoch by the monitored metric (0 / None before any).
        best_confusion: the best epoch's validation confusion matrix (rows true, columns predicted).
        bad_epochs: epochs since the last improvement (early stopping).
        history: one metrics row per finished epoch.
        skipped: unreadable files seen so far, name -> reason.
        stopped_early: early stopping ended the run.
    """

    epoch: int = 0
    best_epoch: int = 0
    best_value: float | None = None
    best_confusion: list[list[int]] = field(default_factory=list)
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False


def rng_states() -> dict[str, Any]:
    """Every random generator the loop draws from, as tensors and plain values."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    npy = states["numpy"]
    key = npy["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    random.setstate(_as_tuple(states["python"]))


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    progress: Progress,
) -> None:
    """Write ``last.ckpt`` (atomically)."""
    state = {
        "format": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_states(),
        "progress": asdict(progress),
    }
    write_atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read ``last.ckpt`` with ``weights_only=True``.

    Raises:
        UsageError: the file is missing, corrupt or of another format.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: nothing to resume") from None
    except Exception as err:
        raise UsageError(
            f"{path} cannot be read ({err}); the run cannot resume from it (start a new --out)"
        ) from err
    if not isinstance(state, dict) or state.get("format") != 1:
        raise UsageError(f"{path} is not a camscope training checkpoint")
    return state


def progress_from(state: dict[str, Any]) -> Progress:
    return Progress(**state["progress"])


def save_best(path: Path, model: nn.Module, epoch: int) -> None:
    """Write the model's weights as safetensors (contiguous copies; channels_last is a layout),
    with a plain file's permissions (safetensors' own ``save_file`` makes them ``0o600``)."""
    from safetensors.torch import save

    tensors = {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()
    }
    write_atomic(path, save(tensors, metadata={"epoch": str(epoch), "format": "camscope-run"}))

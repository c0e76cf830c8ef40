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
from .loop import Step

CHECKPOINT = "last.ckpt"
BEST_WEIGHTS = "model.safetensors"
PARTS = ("optimizer", "scheduler", "scaler")  # the stateful parts of a training step


@dataclass
class TrainingState:
    """Where a run stands after its last finished epoch.

    Attributes:
        epoch: finished epochs.
        best_epoch / best_value: the best epoch by the monitored metric (0 / None before any).
        best_confusion: the best epoch's validation confusion matrix (rows true, columns predicted).
        bad_epochs: epochs since the last improvement (early stopping).
        history: one metrics row per finished epoch.
        skipped: unreadable files seen so far, name -> reason.
        stopped_early: early stopping ended the run.
        best_sha256: the digest of the ``model.safetensors`` this run wrote (``--resume``
            refuses a folder whose file is another: :func:`check_best`; None in older runs).
    """

    epoch: int = 0
    best_epoch: int = 0
    best_value: float | None = None
    best_confusion: list[list[int]] = field(default_factory=list)
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False
    best_sha256: str | None = None


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


def restore(step: Step, state: dict[str, Any]) -> None:
    """Put a checkpoint's optimizer, scheduler, AMP-scaler and generator states back."""
    for part in PARTS:
        getattr(step, part).load_state_dict(state[part])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"].get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    npy = state["rng"]["numpy"]
    key = npy["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    random.setstate(state["rng"]["python"])  # weights_only keeps its tuples tuples


def save_checkpoint(path: Path, model: nn.Module, step: Step, progress: TrainingState) -> None:
    """Write ``last.ckpt`` (atomically)."""
    state = {
        "format": 1,
        "model": model.state_dict(),
        **{part: getattr(step, part).state_dict() for part in PARTS},
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


def save_best(path: Path, model: nn.Module, epoch: int, follows: str | None = None) -> str:
    """Write the model's weights as safetensors (contiguous copies; channels_last is a layout),
    with a plain file's permissions (safetensors' own ``save_file`` makes them ``0o600``).
    ``follows`` (the digest of the best weights before these, kept in the file's metadata) lets
    :func:`check_best` recognise the file of an epoch that was stopped before its checkpoint.
    Returns the file's digest (:func:`camscope.models.fingerprint.bytes_digest`)."""
    from safetensors.torch import save

    from ..models.fingerprint import bytes_digest

    tensors = {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()
    }
    metadata = {"epoch": str(epoch), "format": "camscope-run", "follows": follows or ""}
    data = save(tensors, metadata=metadata)
    write_atomic(path, data)
    return bytes_digest(data)


def check_best(out: Path, progress: TrainingState) -> None:
    """Refuse to resume a run whose ``model.safetensors`` is not the one it wrote (replaced or
    deleted since): the resumed run would keep it as its best epoch unless a later epoch beats
    that epoch's score, and the folder would then describe weights it never trained.

    Raises:
        UsageError: the file is missing or differs, naming it and the best epoch.
    """
    from ..models.fingerprint import file_digest

    if progress.best_sha256 is None:  # no best epoch yet, or a run from before the digest
        return
    path = Path(out) / BEST_WEIGHTS
    try:
        found = file_digest(path)
    except FileNotFoundError:
        found = "missing"
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
    if found != progress.best_sha256 and not _written_after(path, progress):
        what = "is missing" if found == "missing" else "is not the file this run wrote"
        raise UsageError(
            f"cannot resume {str(out)!r}: its {BEST_WEIGHTS} {what} (the weights of epoch "
            f"{progress.best_epoch}, {progress.best_sha256}; found {found}); restore it, or "
            "start a new run in another --out"
        )


def _written_after(path: Path, progress: TrainingState) -> bool:
    """Whether ``path`` is the best file of an epoch after the checkpoint's (the run stopped
    between writing it and writing ``last.ckpt``; the resumed run computes that epoch again)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        epoch = int(meta.get("epoch", "0"))
    except (SafetensorError, OSError, ValueError):  # not a safetensors file: not this run's
        return False
    return epoch > progress.epoch and meta.get("follows") == progress.best_sha256

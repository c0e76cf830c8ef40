"""Fine-tuning starts: timm's local cache, a checkpoint file, or another run folder. Nothing is
downloaded.

* ``"timm"``: the weights timm would download for the architecture, found in the Hugging Face hub
  cache or torch hub's checkpoint folder (:func:`camscope.models.hub.local_timm_weights`); timm
  itself then loads them (dropping the classifier when the class
  count differs and resizing position embeddings), and the small-input stem is adapted afterwards.
* a ``.safetensors`` / ``.pt`` / ``.pth`` state dict, or a run folder (its ``model.safetensors``):
  loaded after the model is built; tensors whose name or shape does not fit (a new classifier, a
  CIFAR stem instead of a 7x7 one) keep their random initialisation and are listed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError, UsageError
from ..models.architectures import resolve_arch
from ..models.checkpoints import check_tensors, read_state_dict
from ..models.hub import local_timm_weights
from ..models.run_folder import WEIGHTS_FILE, is_run_folder

log = logging.getLogger(__name__)


def timm_cache_file(arch: str) -> str:
    """The locally cached pretrained weights of timm architecture ``arch``
    (:func:`camscope.models.hub.local_timm_weights`: the Hugging Face and torch hub caches).

    Raises:
        UsageError: not a timm architecture, timm has no weights for it, or they are not in the
            local cache.
    """
    import timm

    source, name = resolve_arch(arch)
    if source != "timm":
        raise UsageError(f"--pretrained timm needs a timm architecture; {arch!r} is not")
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None or (not cfg.hf_hub_id and not cfg.url):
        raise UsageError(f"--pretrained timm: timm has no pretrained weights for {name!r}")
    found = local_timm_weights(name)
    if found is None:
        raise UsageError(
            f"--pretrained timm: the weights of {name!r} ({cfg.hf_hub_id or cfg.url}) are not in "
            "the local cache and camscope train never downloads them; on a connected machine run "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`, or pass "
            "--pretrained FILE"
        )
    return found


def _state_of(source: str) -> dict[str, torch.Tensor]:
    path = Path(source).expanduser()
    if path.is_dir():
        if not is_run_folder(path):
            raise UsageError(f"--pretrained {source!r}: a folder must be a camscope run folder")
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise UsageError(f"--pretrained {source!r}: no such file (nor 'timm')")
    try:
        return read_state_dict(path)  # the one reader of weights files (models.checkpoints)
    except ModelLoadError as err:
        raise UsageError(f"--pretrained {source!r}: {err}") from err


def load_matching(model: nn.Module, source: str) -> dict[str, Any]:
    """Copy every tensor of ``source`` whose name and shape fit into ``model``.

    Returns ``{"source", "loaded", "kept_random": [names], "sha256"}`` (the digest of the
    tensors loaded: :func:`camscope.models.fingerprint.weights_digest`; ``--resume`` compares it).

    Raises:
        UsageError: unreadable source, fewer than half of the model's tensors fit (the
            checkpoint belongs to another architecture), or NaN, infinite or integer weights
            (:func:`camscope.models.checkpoints.check_tensors`).
    """
    state = _state_of(source)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    kept = sorted(k for k in own if k not in fitting)
    if len(fitting) < len(own) / 2:
        raise UsageError(
            f"--pretrained {source!r} fits only {len(fitting)} of the model's {len(own)} tensors; "
            "it belongs to another architecture"
        )
    try:
        check_tensors(fitting, f"--pretrained {source!r}", own)
    except ModelLoadError as err:
        raise UsageError(str(err)) from None
    model.load_state_dict(fitting, strict=False)
    if kept:
        log.info(
            "fine-tuning from %s: %d tensors keep their random initialisation: %s",
            source,
            len(kept),
            ", ".join(kept[:6]),
        )
    from ..models.fingerprint import weights_digest

    return {
        "source": source,
        "loaded": len(fitting),
        "kept_random": kept,
        "sha256": weights_digest(fitting),
    }

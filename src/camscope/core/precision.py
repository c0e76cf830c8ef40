"""Reduced-precision forward passes: the one reading of a precision name.

``explain(..., precision="bf16")`` runs the model's forward pass (and so its backward) under
:func:`torch.autocast`: convolutions and matrix products in bfloat16 (or float16 on a CUDA GPU),
everything else as the model has it. The CAM math stays float32: the engine casts the
activations, gradients and scores it hands to the methods to float32 before any method reads
them, and the methods run outside the autocast region. ``camscope train --precision`` and the
data-set job's ``precision`` read the same names through :func:`autocast_dtype`.

Names: ``fp32`` (no autocast), ``bf16``, ``fp16`` (CUDA only: CPUs have no fast float16
kernels); ``float32``, ``bfloat16`` and ``float16`` are accepted as the same.

Example:
    >>> autocast_dtype("bf16", torch.device("cpu"))
    torch.bfloat16
    >>> with forward_precision("bf16", torch.device("cpu")):  # doctest: +SKIP
    ...     logits = model(x)  # convolutions in bfloat16
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def canonical_precision(precision: str) -> str:
    """``precision`` as one of :data:`PRECISIONS` (``bfloat16`` -> ``bf16``); others are errors."""
    name = _ALIASES.get(precision, precision)
    if name not in _DTYPES:
        raise UsageError(
            f"precision must be one of {', '.join(PRECISIONS)} (or float32, bfloat16, float16); "
            f"got {precision!r}"
        )
    return name


def autocast_dtype(precision: str, device: torch.device | str | None = None) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; ``None`` for float32 throughout.
    ``device=None`` (not known yet) checks the name only.

    Raises:
        UsageError: an unknown name, or ``fp16`` on a device that is not a CUDA GPU.
    """
    name = canonical_precision(precision)
    kind = None if device is None else torch.device(device).type
    if name == "fp16" and kind not in (None, "cuda"):
        raise UsageError(f"precision fp16 needs a CUDA GPU (the device is {kind}); use bf16")
    return _DTYPES[name]


def forward_precision(precision: str, device: torch.device | str) -> Any:
    """A context that runs the passes inside it at ``precision`` on ``device`` (a no-op for
    ``fp32``)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)

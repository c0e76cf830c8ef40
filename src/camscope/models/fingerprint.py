"""What a model's weights are, not where they came from: :func:`weights_digest` and
:func:`file_digest`.

A resumable run records the digest of the weights it explains or evaluates with, so a resume with
other weights behind the same name (``model.safetensors`` replaced in a run folder, another
``--weights`` file at the same path, a re-downloaded checkpoint) is refused instead of mixing two
models' results in one table.

:func:`weights_digest` hashes the tensors the model holds (its ``state_dict``: parameters and
persistent buffers, each with its name, dtype and shape), so it describes the loaded model
whichever way it was loaded (a run folder, a weights file, a Hugging Face folder, timm's cache, a
factory). Each tensor is hashed on its own (SHA-256, in threads: ``hashlib`` releases the GIL on
large buffers) and the per-tensor digests are hashed in state-dict order. The cost is one read of
the weights: on a 2-core VM (AMD EPYC, CPU torch) about 2 GB/s, ResNet-50's 102 MB in 0.06 s and
ViT-L/16's 1.2 GB in 0.6 s, so a job hashes once, when it starts, never per batch. A model on a
GPU is copied to the host one tensor at a time (not measured here: no GPU was lent).

What it does not see: code. A factory whose ``forward`` changed but whose tensors did not gives
the same digest.

Example:
    >>> from torch import nn
    >>> weights_digest(nn.Linear(2, 2)) == weights_digest(nn.Linear(2, 2))  # random init
    False
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

PREFIX = "sha256:"
_BLOCK = 1 << 20


def weights_digest(weights: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` of a model's state dict (or of a mapping of named tensors).

    Two models with the same names, dtypes, shapes and values give the same digest; anything else
    (one changed value, a renamed or reshaped tensor) gives another.
    """
    from torch import nn

    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    items = [(str(name), tensor) for name, tensor in state.items()]
    threads = max(1, min(8, os.cpu_count() or 1, len(items)))
    with ThreadPoolExecutor(threads) as pool:
        digests = list(pool.map(_tensor_digest, [t for _, t in items]))
    total = hashlib.sha256()
    for (name, tensor), digest in zip(items, digests):
        kind = f"{tensor.dtype}\0{tuple(tensor.shape)}" if _is_tensor(tensor) else "object"
        total.update(f"{name}\0{kind}\0".encode())
        total.update(digest)
    return PREFIX + total.hexdigest()


def _is_tensor(value: object) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    import torch

    if not _is_tensor(tensor):  # a module's extra state (``get_extra_state``): its text form
        return hashlib.sha256(repr(tensor).encode()).digest()
    value = tensor.detach()
    if value.is_quantized:
        value = value.dequantize()
    if value.layout != torch.strided:
        value = value.to_dense()
    data = value.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data.data).digest()


def file_digest(path: str | Path) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in 1 MiB blocks).

    Raises:
        OSError: the file cannot be read (callers name the option it came from).
    """
    digest = hashlib.sha256()
    with Path(path).expanduser().open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return PREFIX + digest.hexdigest()


def bytes_digest(data: bytes) -> str:
    """``"sha256:<hex>"`` of bytes in memory (the same digest :func:`file_digest` gives the file
    they are written to)."""
    return PREFIX + hashlib.sha256(data).hexdigest()

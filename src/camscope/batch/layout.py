"""Channels-last memory layout for a data-set job's model, measured like its threads.

oneDNN's CPU convolutions (and cuDNN's tensor-core ones) are fastest on NHWC data: on the 2-core
VM of ``benchmarks/dataset.py`` EfficientNet-Lite0's Grad-CAM pass takes 17 ms per image in
channels-last against 31 ms in the default layout, ResNet-50's forward 61 against 86 ms, at one
thread. The values are the same: only the order in memory differs (the maps agree to about
1e-6). The job's tuner (:mod:`camscope.batch.tuning`) measures both layouts on its first batches
when :func:`check` finds the model gives the same output in both (a model whose ``forward`` calls
``view`` on a feature map fails in channels-last; such a model stays in its own layout).

:class:`ChannelsLast` puts the model's 4-D parameters and buffers in channels-last for the job
and gives the very tensors it had back afterwards (``restore``): the caller's model is left as it
came, weights, memory format and all.

Example:
    >>> layout = ChannelsLast(model)  # doctest: +SKIP
    >>> if check(model, layout, torch.randn(2, 3, 224, 224)) is None:  # doctest: +SKIP
    ...     layout.apply()
    >>> layout.restore()  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..core.layers import preserved_modes
from .tuning import LAYOUT_MARGIN


class ChannelsLast:
    """``model``'s 4-D tensors in channels-last while applied (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def apply(self) -> None:
        if self._saved is not None:
            return
        # recorded before each change, so that restore() undoes an apply() cut short (Ctrl-C)
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._saved = saved
        with torch.no_grad():
            for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
                if tensor.dim() == 4 and not tensor.is_contiguous(
                    memory_format=torch.channels_last
                ):
                    saved.append((tensor, tensor.data))
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)

    def restore(self) -> None:
        """Give every tensor its own data back (the same storage it had before ``apply``)."""
        for tensor, data in self._saved or []:
            tensor.data = data
        self._saved = None


def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in the layout the model runs in (4-D inputs only)."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def check(
    model: nn.Module, layout: ChannelsLast, x: torch.Tensor, mode: str = "eval"
) -> str | None:
    """Why ``model`` cannot run in channels-last (None: it gives the same outputs on ``x``).

    One no-grad forward in each layout (eval mode for ``mode="eval"``, as ``explain`` runs it);
    a model with modules in train mode under ``mode="as-is"`` is not run at all (its batch-norm
    statistics would change), and stays in its layout.
    """
    if mode != "eval" and any(m.training for m in model.modules()):
        return "the model has modules in train mode (explained as-is)"
    with preserved_modes(model), torch.no_grad():
        if mode == "eval":
            model.eval()
        reference = tree_leaves(model(x))
        try:
            layout.apply()
            got = tree_leaves(model(to_layout(x, True)))
        except (RuntimeError, ValueError) as err:  # a view on a feature map, say
            return f"{type(err).__name__}: {err}".splitlines()[0][:200]
        finally:
            layout.restore()
    if not _same(got, reference):
        return "its outputs differ in channels-last"
    return None


def _same(got: list[Any], reference: list[Any]) -> bool:
    if len(got) != len(reference):
        return False
    for a, b in zip(got, reference):
        if isinstance(b, torch.Tensor):
            if not isinstance(a, torch.Tensor) or a.shape != b.shape:
                return False
            if b.is_floating_point():
                scale = float(b.abs().max()) if b.numel() else 0.0
                if not torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3 * scale + 1e-6):
                    return False
            elif not torch.equal(a, b):
                return False
    return True


def faster_in_channels_last(
    layout: ChannelsLast, x: torch.Tensor, run: Callable[[torch.Tensor], Any], rounds: int = 2
) -> tuple[bool, str]:
    """Whether ``run(x)`` (one explain call) is faster with the model in channels-last by the
    tuner's margin (:data:`camscope.batch.tuning.LAYOUT_MARGIN`, 3%), timed on ``x`` after one
    warm-up in each layout, ``rounds`` times each, alternately (the best time of each layout
    counts); the layout is left applied when it is. For a process that explains without the
    data-set job's tuner (a Ray actor): call :func:`check` first. Returns the choice and a line
    saying why."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(rounds + 1):
        for channels_last in (False, True):
            if channels_last:
                layout.apply()
            else:
                layout.restore()
            began = time.perf_counter()
            run(to_layout(x, channels_last))
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            if repeat:  # the first round is the warm-up
                times[channels_last].append(time.perf_counter() - began)
    own, last = min(times[False]), min(times[True])
    keep = last < own * (1 - LAYOUT_MARGIN)
    if not keep:
        layout.restore()
    per_image = 1e3 / x.shape[0]
    why = f"{per_image * last:.1f} ms/image channels-last, {per_image * own:.1f} default"
    return keep, f"{'channels-last' if keep else 'default'} layout: {why}"

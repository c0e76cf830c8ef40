"""A faster model for the many gradient-free passes of Score-CAM and of the evaluation metrics.

Score-CAM runs the model once per distinct mask, the faithfulness metrics once per perturbed
image; none of those passes needs gradients, so they can run on a copy of the model that is
cheaper to evaluate but computes the same function. :class:`FastForward` builds that copy once
per model and keeps it while the model's parameters stay the same:

* **eval-mode copy with batch-norm folded** into the preceding convolutions (``torch.fx``; the
  copy is left unfolded where the model cannot be traced symbolically), weights in
  ``channels_last``, inputs converted to ``channels_last``;
* **on CPU, a frozen TorchScript graph** of that copy (``torch.jit.trace`` +
  ``torch.jit.optimize_for_inference``: oneDNN convolutions with pre-packed weights, fused
  activations). Measured on a 2-core AVX-512 CPU at batch 8: ResNet-50 passes about 1.25x faster
  than the folded eager copy. A trace only replays the operations it saw, so the graph is used
  only when tracing raised no ``TracerWarning`` (the tracer's signal of data-dependent Python
  control flow) and it reproduces the eager copy on the first batch (relative difference
  <= 1e-4); otherwise, and where ``torch.jit`` is unavailable, the eager copy runs;
* **optional reduced precision** (``precision="bfloat16"``, or ``"float16"`` on CUDA): the passes
  run under ``torch.autocast``. This is an approximation, off by default: measured on the same CPU
  (which has AVX-512 BF16), EfficientNet-Lite0 Score-CAM ran 2.4x faster with maps correlating
  0.999 with float32.

Passes run under ``torch.inference_mode()`` by the caller; the user's model is never modified.
Memory: while the model lives (or until :func:`clear_caches`), the folded copy and, on CPU, the
frozen graph each hold a copy of the weights.
"""

from __future__ import annotations

import copy
import logging
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

from ..core.layers import preserved_modes
from ..errors import UsageError

log = logging.getLogger(__name__)

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)
# Per folded copy: one traced graph per input shape (without the batch size) and dtype.
_GRAPHS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], _Traced]] = (
    weakref.WeakKeyDictionary()
)


def clear_caches() -> None:
    """Drop every cached copy and graph (they are also dropped with their model)."""
    _COPIES.clear()
    _GRAPHS.clear()


def _fingerprint(model: nn.Module, device: torch.device) -> tuple[Any, ...]:
    tensors = list(model.parameters()) + list(model.buffers())
    return (str(device), *((t.data_ptr(), t._version) for t in tensors))


def inference_model(model: nn.Module, device: torch.device) -> nn.Module:
    """A cached eval-mode copy of ``model`` with batch-norm folded into the convolutions and
    ``channels_last`` weights; rebuilt when a parameter or buffer of ``model`` changes."""
    key = _fingerprint(model, device)
    cached = _COPIES.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    with preserved_modes(model):
        model.eval()
        try:
            from torch.fx.experimental.optimization import fuse

            fast = fuse(model)
        except Exception as err:  # untraceable control flow: keep the layers as they are
            log.debug("batch-norm folding skipped (%s: %s)", type(err).__name__, err)
            fast = copy.deepcopy(model)
    fast.eval()
    fast = fast.to(memory_format=torch.channels_last)
    for p in fast.parameters():
        p.requires_grad_(False)
    _COPIES[model] = (key, fast)
    return fast


def precision_dtype(precision: str, device: torch.device | None = None) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` name (``None`` for float32); bad names are errors,
    and so is ``float16`` on a known non-CUDA ``device``."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "float16" and device is not None and device.type != "cuda":
        raise UsageError(
            "precision 'float16' needs a CUDA device; on CPU use 'bfloat16' (or 'float32')"
        )
    return PRECISIONS[precision]


def _same_outputs(got: Any, ref: Any) -> bool:
    a, b = tree_leaves(got), tree_leaves(ref)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            if x != y:
                return False
            continue
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        tol = 1e-4 * float(y.abs().max()) if y.numel() else 0.0
        if not bool(((x - y).abs() <= tol + 1e-6).all()):
            return False
    return True


def _trace(fast: nn.Module, batch: Tensor) -> Callable[[Tensor], Any] | None:
    """A frozen TorchScript graph of ``fast`` for inputs like ``batch``, or None when the trace
    would not be faithful (or TorchScript is unavailable)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(fast, batch, check_trace=False, strict=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception as err:  # any failure only means: run the eager copy
        log.debug("TorchScript graph skipped (%s: %s)", type(err).__name__, err)
        return None
    if any(issubclass(w.category, torch.jit.TracerWarning) for w in caught):
        log.debug("TorchScript graph skipped: the tracer saw data-dependent control flow")
        return None
    return graph


class FastForward:
    """``forward(batch)``: the model's output for ``batch`` from the fastest faithful copy.

    Call it under ``torch.inference_mode()`` (or ``torch.no_grad()``). With ``optimize=False``
    the user's model itself runs (in whatever mode the caller set).
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        *,
        optimize: bool = True,
        precision: str = "float32",
    ) -> None:
        self.model = model
        self.device = device
        self.optimize = optimize
        self.autocast = precision_dtype(precision, device)
        self.trace = optimize and device.type == "cpu" and self.autocast is None

    def module(self) -> nn.Module:
        """The module that runs the passes (the folded copy, or the model itself)."""
        return inference_model(self.model, self.device) if self.optimize else self.model

    def __call__(self, batch: Tensor, *, traced: bool = True) -> Any:
        """``traced=False`` runs the eager copy even where a graph exists (e.g. to measure the
        memory of a pass with module hooks, which a graph would not call)."""
        module = self.module()
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
        if dtype is not None and batch.dtype != dtype and self.autocast is None:
            batch = batch.to(dtype)
        if self.optimize and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                return module(batch)
        if self.trace and traced:
            return self._traced(module, batch)
        return module(batch)

    def _traced(self, module: nn.Module, batch: Tensor) -> Any:
        entry = _GRAPHS.setdefault(module, {}).get((tuple(batch.shape[1:]), batch.dtype))
        if entry is None:
            entry = _Traced(_trace(module, batch))
            _GRAPHS[module][(tuple(batch.shape[1:]), batch.dtype)] = entry
        return entry(module, batch)


class _Traced:
    """A traced graph and the batch sizes for which it was checked against the eager copy (a
    trace may have baked the batch size in, so every new size is checked once)."""

    def __init__(self, graph: Callable[[Tensor], Any] | None) -> None:
        self.graph = graph
        self.checked: dict[int, bool] = {}

    def __call__(self, module: nn.Module, batch: Tensor) -> Any:
        n = batch.shape[0]
        if self.graph is None or self.checked.get(n) is False:
            return module(batch)
        if n in self.checked:
            return self.graph(batch)
        reference = module(batch)
        try:
            self.checked[n] = _same_outputs(self.graph(batch), reference)
        except RuntimeError as err:  # e.g. a shape the trace baked in
            log.debug("TorchScript graph failed at batch %d (%s)", n, err)
            self.checked[n] = False
        if not self.checked[n]:
            log.debug("TorchScript graph skipped at batch %d: it differs from the eager model", n)
        return reference

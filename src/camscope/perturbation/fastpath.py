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

**Staleness.** The copy is rebuilt when the model's weights change. Each call compares every
parameter's and buffer's identity and version (which autograd-visible in-place ops change) and up
to 8 sampled values of each (edits through ``p.data``, which leave the version alone, of whole
tensors); the first call of each :class:`FastForward` (one per ``explain`` call and per
evaluation run) also compares a checksum of every value's bit pattern, which any edit of any
single value changes. Left open: an edit of a few unsampled values through ``p.data`` between two
calls of one long-lived :class:`FastForward`.

**Memory.** While the model lives (or until :func:`clear_caches`), the folded copy and, on CPU,
each frozen graph hold a copy of the weights. Graphs are kept per input shape in one
least-recently-used cache of at most 8 graphs and 1 GiB of weights (:func:`set_cache_limits`);
:func:`clear_caches` empties every cache and returns the memory to the system.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import logging
import sys
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

from ..core.layers import preserved_modes
from ..errors import UsageError

log = logging.getLogger(__name__)

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Default bounds of the traced-graph cache (see :func:`set_cache_limits`).
MAX_GRAPHS = 8
MAX_GRAPH_BYTES = 1 << 30

_SAMPLES_PER_TENSOR = 8
_LOCK = threading.RLock()  # guards the caches below (explain on different models runs in parallel)


@dataclass
class _Copy:
    """A folded copy and what it was built from: tensor identities and versions (a cheap first
    test), a few sampled values per tensor (checked on every call) and a checksum of every value's
    bit pattern (checked once per :class:`FastForward`)."""

    identity: tuple[Any, ...]
    samples: Tensor
    checksum: Tensor
    module: nn.Module


_COPIES: weakref.WeakKeyDictionary[nn.Module, _Copy] = weakref.WeakKeyDictionary()
# Per folded copy: one traced graph per input shape (without the batch size) and dtype; the
# least recently used graphs are dropped beyond MAX_GRAPHS graphs or MAX_GRAPH_BYTES in all.
_GRAPHS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], _Traced]] = (
    weakref.WeakKeyDictionary()
)
_LRU: OrderedDict[tuple[int, tuple[Any, ...]], tuple[weakref.ref[nn.Module], int]] = OrderedDict()
_LIMITS = {"graphs": MAX_GRAPHS, "bytes": MAX_GRAPH_BYTES}


def set_cache_limits(max_graphs: int | None = None, max_bytes: int | None = None) -> None:
    """Bound the traced-graph cache: at most ``max_graphs`` graphs holding at most ``max_bytes``
    of weights in all (default 8 graphs, 1 GiB); the least recently used go first. The newest
    graph is always kept, even when it alone is larger than ``max_bytes``."""
    with _LOCK:
        if max_graphs is not None:
            if max_graphs < 1:
                raise UsageError(f"max_graphs must be >= 1, got {max_graphs}")
            _LIMITS["graphs"] = int(max_graphs)
        if max_bytes is not None:
            if max_bytes < 0:
                raise UsageError(f"max_bytes must be >= 0, got {max_bytes}")
            _LIMITS["bytes"] = int(max_bytes)
        _evict()


def cache_info() -> dict[str, int]:
    """Live cache entries: folded copies, traced graphs and the weight bytes the graphs hold."""
    with _LOCK:
        _drop_dead()
        return {
            "copies": len(_COPIES),
            "graphs": len(_LRU),
            "graph_bytes": sum(size for _, size in _LRU.values()),
        }


def clear_caches() -> None:
    """Drop every cached copy and graph and give the memory back to the system.

    They are also dropped with their model. Frozen TorchScript graphs are freed by a garbage
    collection, and on Linux (glibc) ``malloc_trim`` returns the freed heap pages, which glibc
    otherwise keeps for reuse (measured: a toy net traced at 60 input sizes held 130 MiB more
    after the caches were emptied, 50 MiB after the trim).
    """
    with _LOCK:
        _COPIES.clear()
        _GRAPHS.clear()
        _LRU.clear()
    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        log.debug("malloc_trim unavailable")


def _tensors(model: nn.Module) -> list[Tensor]:
    return [t.detach() for t in (*model.parameters(), *model.buffers())]


def _identity(tensors: Sequence[Tensor], device: torch.device) -> tuple[Any, ...]:
    return (str(device), *((t.data_ptr(), t._version, t.dtype, t.shape) for t in tensors))


def _samples(tensors: Sequence[Tensor]) -> Tensor:
    """Up to 8 evenly spaced values of every tensor, as float64 (0.4 ms per 100 tensors on CPU).

    Catches edits through ``p.data`` (which leave ``_version`` unchanged) of whole tensors:
    ``mul_``, ``copy_``, ``normal_``, ``zero_``, loading another state dict.
    """
    parts = []
    for t in tensors:
        n = t.numel()
        if n == 0:
            continue
        count = min(_SAMPLES_PER_TENSOR, n)
        step = max(1, n // count)
        dense = t.is_contiguous() or (
            t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)
        )
        if dense:  # the storage holds exactly the tensor's values: stride through it
            part = t.as_strided((count,), (step,), t.storage_offset())
        else:
            part = t.reshape(-1)[::step][:count]
        parts.append(part.to(torch.float64) if not t.is_complex() else part.real.double())
    if not parts:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([p.to(parts[0].device) for p in parts])


_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _checksum(tensors: Sequence[Tensor]) -> Tensor:
    """Per tensor, the wrapping integer sum of its values' bit patterns: any change of any one
    value changes it (ResNet-50's 25 M values: 6 ms on one CPU core)."""
    sums = []
    for t in tensors:
        view = _INT_VIEW.get(t.element_size())
        if t.numel() == 0 or view is None or t.is_complex():
            sums.append(torch.zeros((), dtype=torch.int64, device=t.device))
            continue
        bits = t.view(view)
        sums.append(bits.sum(dtype=torch.int64 if view is torch.int64 else torch.int32).long())
    if not sums:
        return torch.zeros(0, dtype=torch.int64)
    if len({s.device for s in sums}) == 1:
        return torch.stack(sums).cpu()  # one device synchronisation, not one per tensor
    return torch.stack([s.cpu() for s in sums])


def inference_model(model: nn.Module, device: torch.device, *, verified: bool = False) -> nn.Module:
    """A cached eval-mode copy of ``model`` with batch-norm folded into the convolutions and
    ``channels_last`` weights; rebuilt when a parameter or buffer of ``model`` changes.

    A change is seen when a tensor is replaced or edited through autograd-visible in-place ops
    (identity and version), when any of its sampled values changed (edits of whole tensors
    through ``p.data``), and, unless ``verified`` (the caller checked it before), when the
    checksum of all values changed (edits of single values through ``p.data``).
    """
    return _cached_copy(model, device, verified)[0]


def _cached_copy(model: nn.Module, device: torch.device, verified: bool) -> tuple[nn.Module, _Copy]:
    tensors = _tensors(model)
    identity = _identity(tensors, device)
    samples = _samples(tensors)
    with _LOCK:
        cached = _COPIES.get(model)
    if (
        cached is not None
        and cached.identity == identity
        and torch.equal(cached.samples, samples)
        and (verified or torch.equal(cached.checksum, _checksum(tensors)))
    ):
        return cached.module, cached
    if cached is not None:
        log.debug("model parameters changed: rebuilding the fast copy")
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
    entry = _Copy(identity, samples, _checksum(tensors), fast)
    with _LOCK:
        _COPIES[model] = entry
    return fast, entry


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
    the user's model itself runs (in whatever mode the caller set). Every call checks that the
    model's weights are still those the copy was made from (identities, versions and sampled
    values; the first call also a checksum of every value) and rebuilds the copy if not.
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
        # the copy whose checksum this instance compared (weak: clear_caches() must free it)
        self._verified: weakref.ref[_Copy] | None = None

    def module(self) -> nn.Module:
        """The module that runs the passes (the folded copy, or the model itself)."""
        if not self.optimize:
            return self.model
        checked = self._verified is not None and self._verified() is not None
        module, entry = _cached_copy(self.model, self.device, verified=checked)
        self._verified = weakref.ref(entry)
        return module

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
            return _traced(module, batch)(module, batch)
        return module(batch)


def _weight_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors(module))


def _traced(module: nn.Module, batch: Tensor) -> _Traced:
    """The cached graph of ``module`` for inputs like ``batch`` (traced on first use)."""
    key = (tuple(batch.shape[1:]), batch.dtype)
    lru_key = (id(module), key)
    with _LOCK:
        entry = _GRAPHS.get(module, {}).get(key)
        if entry is not None:
            _LRU.move_to_end(lru_key)
            return entry
    entry = _Traced(_trace(module, batch))
    with _LOCK:
        _GRAPHS.setdefault(module, {})[key] = entry
        # a frozen graph holds its own copy of the weights (constants), about their size
        size = _weight_bytes(module) if entry.graph is not None else 0
        _LRU[lru_key] = (weakref.ref(module), size)
        _LRU.move_to_end(lru_key)
        _evict()
    return entry


def _drop_dead() -> None:
    for lru_key in [k for k, (ref, _) in _LRU.items() if ref() is None]:
        del _LRU[lru_key]


def _evict() -> None:
    """Drop least recently used graphs beyond the count and byte limits (the newest stays)."""
    _drop_dead()
    total = sum(size for _, size in _LRU.values())
    while len(_LRU) > 1 and (len(_LRU) > _LIMITS["graphs"] or total > _LIMITS["bytes"]):
        (_, key), (ref, size) = _LRU.popitem(last=False)
        module = ref()
        if module is not None:
            _GRAPHS.get(module, {}).pop(key, None)
        total -= size


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

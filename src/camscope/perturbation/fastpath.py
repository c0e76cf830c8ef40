"""A faster model for the many gradient-free passes of Score-CAM and of the evaluation metrics.

Score-CAM runs the model once per distinct mask, the faithfulness metrics once per perturbed
image; none of those passes needs gradients, so they can run on a copy of the model that is
cheaper to evaluate but computes the same function. A :class:`FastForward` is that copy:

* **an eval-mode copy** of the model (``copy.deepcopy``, parameters without gradients, weights
  in ``channels_last``, inputs converted to ``channels_last``); on CUDA the copy also has its
  batch-norm layers folded into the preceding convolutions (``torch.fx``; left unfolded where
  the model cannot be traced symbolically);
* **on CPU, a frozen TorchScript graph** of that copy per input shape (``torch.jit.trace``,
  ``torch.jit.freeze``, which folds batch-norm into the convolutions, and
  ``torch.jit.optimize_for_inference``: oneDNN convolutions with pre-packed weights, fused
  activations). Measured on a 2-core AVX-512 CPU (one thread): EfficientNet-Lite0 passes at
  batch 8 took 7.3 ms per image against 13.3 ms for the eager copy. A trace replays only the
  operations it saw, so a graph is used only when tracing raised no ``TracerWarning`` (the
  tracer's signal of data-dependent Python control flow), and at each batch size only after its
  first answer matched the eager copy's (relative difference <= 1e-4; at the traced batch the
  eager answer is the trace's own run); otherwise, and where ``torch.jit`` is unavailable, the
  eager copy runs. Batch-norm is not folded with ``torch.fx`` on CPU: the frozen graph folds it
  anyway, and on the eager copy folding gained nothing measurable there;
* **optional reduced precision** (``precision="bfloat16"``, or ``"float16"`` on CUDA): the passes
  run on the eager copy under ``torch.autocast``. This is an approximation, off by default:
  measured on the same CPU (which has AVX-512 BF16), EfficientNet-Lite0 Score-CAM ran 2.4x
  faster with maps correlating 0.999 with float32.

**Ownership.** Nothing is cached at module level: a :class:`FastForward` holds its copy and its
graphs, and whoever creates it owns them and decides how long they live (they go with the
object, or at :meth:`FastForward.close`). Nothing in camscope runs a model's passes on a copy
unless its caller asked for it: Score-CAM's family and occlusion with ``optimize=True`` (their
default) build one copy for the call and drop it at its end, or use the ``FastForward`` the caller
passes as ``method_options={"fast_model": ...}`` to share one between calls;
:class:`camscope.evaluation.CountingForward` runs the metrics' passes on the ``FastForward`` its
creator hands it (the evaluation run makes one per run), or on the model itself.

**Staleness: exact.** At the start of each use (:meth:`FastForward.use`; a plain call is a use of
its own) the model is compared with the copy: the same modules (names, types, objects), the same
parameter and buffer names, shapes, dtypes and devices, and every value bit for bit against the
copy's own (which are the values the graphs were built from). Any difference rebuilds the copy
and drops its graphs. This sees every edit, also through ``p.data`` (which leaves the version
counter alone) and of single values; it costs one read of the weights per use (measured on one
CPU core: 2-3 ms for EfficientNet-Lite0's 4.7 M values, 6-11 ms for ResNet-50's 25 M, against
several seconds for one Score-CAM call). Not seen: changes of a module's non-tensor attributes
(``eps``, ``stride``...) and hooks added or removed after the copy was made (the copy runs the
hooks the model had when it was made); make a new ``FastForward`` after such an edit. Within a
use the model must not change (:func:`camscope.explain` holds the model's lock for the call).

**Memory.** The copy holds a copy of the weights (on CUDA two: as copied, to check against, and
folded), each frozen graph another (graphs are kept per input shape, at most ``max_graphs`` per
``FastForward``, least recently used dropped first).

**Warnings.** TorchScript is deprecated in recent torch releases, which say so with a
``FutureWarning`` (shown once per process by Python's default filters). camscope installs no
warning filters: they are process-wide.

Passes run under ``torch.inference_mode()`` (or ``torch.no_grad()``) by the caller; the user's
model is never modified.

Example:
    >>> fast = FastForward(model, torch.device("cpu"))  # doctest: +SKIP
    >>> with fast.use() as run, torch.inference_mode():  # doctest: +SKIP
    ...     logits = [run(batch) for batch in batches]
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ..core.precision import autocast_dtype, canonical_precision
from ..errors import UsageError

log = logging.getLogger(__name__)

#: Traced graphs a :class:`FastForward` keeps (one per input shape), by default.
MAX_GRAPHS = 4

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _structure(model: nn.Module) -> tuple[Any, ...]:
    return tuple((name, type(m), id(m)) for name, m in model.named_modules())


def _tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(n, t.detach()) for n, t in (*model.named_parameters(), *model.named_buffers())]


def _same_bits(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    view = _INT_VIEW.get(a.element_size())
    if view is None or a.is_complex():
        return bool(torch.equal(a, b))
    return bool(torch.equal(a.view(view), b.view(view)))


class _Copy:
    """What one build made from the model: the eager copy, the values it was made from (its own
    parameters and buffers), and the graphs traced from it."""

    def __init__(self, model: nn.Module, device: torch.device, trace: bool, max_graphs: int):
        self.structure = _structure(model)
        self.names = [n for n, _ in _tensors(model)]
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
        self._lock = threading.Lock()
        try:
            with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, no graph
                twin = copy.deepcopy(model)
        except Exception as err:  # e.g. a module holding an uncopyable handle
            log.debug("no fast copy (%s: %s): the model itself runs", type(err).__name__, err)
            self.module, self.copied, self.trace = model, False, False
            self.reference: list[Tensor] = []
            return
        twin.eval()
        for p in twin.parameters():
            p.requires_grad_(False)
        twin.to(memory_format=torch.channels_last)  # in place; the values stay
        # the copy's values as made, before any folding: what the model must still equal
        self.reference = [t for _, t in _tensors(twin)]
        if device.type == "cuda":
            twin = _folded(twin).to(memory_format=torch.channels_last)
        self.module = twin
        self.copied, self.trace = True, trace

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` is still exactly what this copy was made from (module docstring)."""
        if not self.copied:
            return True  # the model itself runs
        if _structure(model) != self.structure:
            return False
        tensors = _tensors(model)
        if [n for n, _ in tensors] != self.names:
            return False
        return all(_same_bits(t, r) for (_, t), r in zip(tensors, self.reference))

    def __call__(self, batch: Tensor, *, traced: bool = True) -> Any:
        if not (self.trace and traced):
            return self.module(batch)
        key = (tuple(batch.shape[1:]), batch.dtype)
        with self._lock:
            entry = self.graphs.get(key)
            if entry is not None:
                self.graphs.move_to_end(key)
        if entry is None:
            entry, answer = _Graph.trace(self.module, batch)
            with self._lock:
                self.graphs[key] = entry
                while len(self.graphs) > self.max_graphs:
                    self.graphs.popitem(last=False)
            return answer
        return entry(self.module, batch)


def _folded(model: nn.Module) -> nn.Module:
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(model, inplace=True)  # new convolutions: the reference values stay
    except Exception as err:  # untraceable control flow: keep the layers as they are
        log.debug("batch-norm folding skipped (%s: %s)", type(err).__name__, err)
        return model


class FastForward:
    """``forward(batch)``: the model's output for ``batch`` from the fastest faithful copy,
    owned by whoever creates it (see the module docstring).

    Call it under ``torch.inference_mode()`` (or ``torch.no_grad()``). Each call, or each
    ``with fast.use() as run:`` block, first compares the model with the copy, exactly, and
    rebuilds the copy if they differ. With ``optimize=False`` the user's model itself runs (in
    whatever mode the caller set), with the same dtype handling and autocast.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        *,
        optimize: bool = True,
        precision: str = "float32",
        max_graphs: int = MAX_GRAPHS,
    ) -> None:
        if max_graphs < 1:
            raise UsageError(f"max_graphs must be >= 1, got {max_graphs}")
        self.model = model
        self.device = device
        self.optimize = optimize
        self.precision = canonical_precision(precision)  # "bfloat16" and "bf16" are one
        self.autocast = autocast_dtype(precision, device)
        self.trace = optimize and device.type == "cpu" and self.autocast is None
        self.max_graphs = max_graphs
        self.builds = 0  # how many copies were made (a rebuild after a change counts)
        self._copy: _Copy | None = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[Run]:
        """One use: the model is checked against the copy once (rebuilt if it changed); the
        yielded ``run(batch, traced=True)`` then runs batches without further checks. The model
        must not change inside the block."""
        if not self.optimize:
            yield self._run(None)
            return
        with self._lock:
            current = self._copy
            if current is None or not current.matches(self.model):
                if current is not None:
                    log.debug("model parameters changed: rebuilding the fast copy")
                current = self._copy = _Copy(self.model, self.device, self.trace, self.max_graphs)
                self.builds += 1
        yield self._run(current)

    def module(self) -> nn.Module:
        """The eager module that runs the passes (the copy, or the model itself), as of now."""
        with self.use() as run:
            return run.module

    def __call__(self, batch: Tensor, *, traced: bool = True) -> Any:
        """One use with one batch (see :class:`Run`)."""
        with self.use() as run:
            return run(batch, traced=traced)

    def close(self) -> None:
        """Drop the copy and its graphs now (they also go with this object)."""
        with self._lock:
            self._copy = None

    def _run(self, current: _Copy | None) -> Run:
        return Run(self.model if current is None else current.module, current, self)


class Run:
    """The forward of one use of a :class:`FastForward`: ``run(batch, traced=True)``;
    ``run.module`` is the eager module behind it (the copy, or the model itself)."""

    def __init__(self, module: nn.Module, current: _Copy | None, owner: FastForward) -> None:
        self.module = module
        self._copy = current
        self._autocast = owner.autocast
        self._device_type = owner.device.type
        self._dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)

    def __call__(self, batch: Tensor, *, traced: bool = True) -> Any:
        """``traced=False`` runs the eager module even where a graph exists (e.g. to measure
        the memory of a pass with module hooks, which a graph would not call)."""
        if self._dtype is not None and batch.dtype != self._dtype and self._autocast is None:
            batch = batch.to(self._dtype)
        if self._copy is not None and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self._autocast is not None:
            with torch.autocast(self._device_type, dtype=self._autocast):
                return self.module(batch)
        if self._copy is None:
            return self.module(batch)
        return self._copy(batch, traced=traced)


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


class _Recorder(nn.Module):
    """Runs ``inner`` and keeps its output. The inner module is not registered: the tracer
    then records its weights as constants instead of building a script module for each of its
    submodules (measured: EfficientNet-Lite0 traced in 0.2 s instead of 0.5 s)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = [inner]
        self.output: Any = None

    def forward(self, x: Tensor) -> Any:
        self.output = self.inner[0](x)
        return self.output


_T = torch.Tensor
#: Reads of a tensor's values into Python: the trace would freeze what the forward did with them
#: (the tracer's ``TracerWarning`` cases of data-dependent control flow).
_VALUE_READS = {
    _T.__bool__, _T.__int__, _T.__float__, _T.__complex__, _T.__index__, _T.item, _T.tolist,
    _T.numpy, _T.__array__, torch.tensor,
}  # fmt: skip


class _ValueReads(TorchFunctionMode):
    """Notes every read of tensor values during the trace. A torch-function mode acts in its own
    thread only (``warnings.catch_warnings``, which would catch the tracer's own warning, changes
    process-wide state)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _VALUE_READS:
            self.seen.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


class _Graph:
    """A frozen graph for one input shape and the batch sizes at which its answer was checked
    against the eager copy (a trace may have baked the batch size in)."""

    def __init__(self, graph: Callable[[Tensor], Any] | None) -> None:
        self.graph = graph
        self.checked: dict[int, bool] = {}

    @classmethod
    def trace(cls, module: nn.Module, batch: Tensor) -> tuple[_Graph, Any]:
        """Trace ``module`` on ``batch``; returns the graph and the answer for ``batch`` (the
        graph's once it matched the trace's own eager run, else the eager one)."""
        recorder, watch = _Recorder(module), _ValueReads()
        try:
            with watch:
                traced = torch.jit.trace(recorder, batch, check_trace=False, strict=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        except Exception as err:  # any failure only means: run the eager copy
            log.debug("TorchScript graph skipped (%s: %s)", type(err).__name__, err)
            return cls(None), recorder.output if recorder.output is not None else module(batch)
        if watch.seen:
            log.debug("TorchScript graph skipped: the forward read tensor values (%s)", watch.seen)
            return cls(None), recorder.output
        entry = cls(graph)
        return entry, entry._checked(batch, recorder.output)

    def __call__(self, module: nn.Module, batch: Tensor) -> Any:
        n = batch.shape[0]
        if self.graph is None or self.checked.get(n) is False:
            return module(batch)
        if n in self.checked:
            return self.graph(batch)
        return self._checked(batch, module(batch))

    def _checked(self, batch: Tensor, reference: Any) -> Any:
        n = batch.shape[0]
        assert self.graph is not None
        try:
            got = self.graph(batch)
            self.checked[n] = _same_outputs(got, reference)
        except RuntimeError as err:  # e.g. a shape the trace baked in
            log.debug("TorchScript graph failed at batch %d (%s)", n, err)
            self.checked[n] = False
        if not self.checked[n]:
            log.debug("TorchScript graph skipped at batch %d: it differs from the eager model", n)
            return reference
        return got

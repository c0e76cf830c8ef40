"""``compile=True`` for a data-set job: the model's trunk, up to the explained layer, compiled.

``explain`` runs everything before the explained layer without an autograd graph (the layer's
hook starts the graph), so that trunk, most of the network at the usual last-block layers, is a
plain inference pass that :func:`torch.compile` can turn into fused kernels without a backward.
:func:`trunk_modules` finds it from one dry forward: the outermost modules that run exactly once
and have finished before every explained layer does (neither a layer's ancestor nor a
descendant). :class:`CompiledTrunk` compiles each of them in place (``nn.Module.compile``), warms
them up with a batch of the job's size (outside the timed rows: the compile itself takes tens of
seconds on a CPU), and on :meth:`~CompiledTrunk.restore` gives the modules back as they were.
The head after the layer, where the gradients flow, stays eager.

Batches of another size (the last one of a job) and calls in another grad mode run eagerly
rather than compiling again (``torch.compiler.set_stance("eager_on_recompile")`` around each
call, :meth:`CompiledTrunk.calls`). Guided methods hook every activation module of the trunk and
need its input gradients: with one of them the job does not compile (a warning says so). A
compiler that fails (no C++ compiler for a CPU, an unsupported operation) is reported as a
warning and the job runs eagerly; the maps are the eager ones within float32 rounding either way
(``tests/batch/test_speed_options.py``).

Example:
    >>> trunk = CompiledTrunk(model, ["bn2"], torch.zeros(32, 3, 224, 224))  # doctest: +SKIP
    >>> with trunk.calls():  # doctest: +SKIP
    ...     explain(model, x, "gradcam", "bn2")
    >>> trunk.restore()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..core.layers import hooked_dry_forward, preserved_modes
from ..core.precision import forward_precision

BACKEND = "inductor"  # torch.compile's backend (the tests use "eager": dynamo without codegen)


def trunk_modules(
    model: nn.Module, layers: Sequence[str], example: torch.Tensor
) -> list[tuple[str, nn.Module]]:
    """The outermost modules that run once and finish before every layer of ``layers`` does."""
    finished: list[str] = []
    modules = dict(model.named_modules())

    def record(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, _output: Any) -> None:
            finished.append(name)

        return hook

    hooked_dry_forward(model, example, [(m, record(n)) for n, m in modules.items() if n])
    calls = Counter(finished)
    order = {name: i for i, name in enumerate(finished)}
    if any(layer not in order for layer in layers):
        return []
    limit = min(order[layer] for layer in layers)

    def related(name: str, layer: str) -> bool:
        return name.startswith(layer + ".") or layer.startswith(name + ".")

    def before(name: str) -> bool:
        return (
            calls.get(name) == 1
            and order[name] < limit
            and not any(related(name, layer) for layer in layers)
        )

    chosen = []
    for name in finished:
        parent = name.rpartition(".")[0]
        if not before(name) or (parent and before(parent)):
            continue
        module = modules[name]
        if next(module.parameters(), None) is None:
            continue  # an activation or pooling alone: nothing worth a graph
        chosen.append((name, module))
    return chosen


class CompiledTrunk:
    """The trunk of ``model`` before ``layers`` compiled in place (see the module docstring).

    Args:
        model: the model the job explains (its trunk modules are compiled until :meth:`restore`).
        layers: the explained layers' names.
        example: a batch of the job's size on the model's device (zeros do: only the shape, the
            dtype and the device matter), used to find the trunk and to warm the graphs up.
        precision: the job's forward precision (the graphs are built under the same autocast).
        mode: ``"eval"`` compiles the eval-mode trunk (as ``explain`` runs it), ``"as-is"`` the
            modes the model has.
        backend: :func:`torch.compile`'s backend (default :data:`BACKEND`, inductor).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        example: torch.Tensor,
        precision: str = "fp32",
        mode: str = "eval",
        backend: str | Callable[..., Any] | None = None,
    ) -> None:
        self.modules: list[tuple[str, nn.Module]] = []
        self.error: str | None = None
        trunk = [
            (name, module)
            for name, module in trunk_modules(model, layers, example)
            if getattr(module, "_compiled_call_impl", None) is None  # the caller's own compile
        ]
        if not trunk:
            self.error = "no module runs before the explained layer"
            return
        if mode != "eval" and any(m.training for m in model.modules()):
            # the warm-up forward would update the batch-norm statistics of the user's model
            self.error = "the model has modules in train mode (explained as-is)"
            return
        self.modules = trunk
        try:
            for _name, module in trunk:
                module.compile(backend=backend or BACKEND)
            with preserved_modes(model), torch.no_grad():
                if mode == "eval":
                    model.eval()
                with forward_precision(precision, example.device):
                    model(example)
        except Exception as err:  # any compiler failure: go on eagerly, and say so
            self.restore()
            said = " ".join(f"{type(err).__name__}: {err}".split())  # dynamo's are many lines
            self.error = said if len(said) <= 300 else said[:299] + "…"
        except BaseException:  # Ctrl-C while compiling: the model goes back uncompiled
            self.restore()
            raise

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.modules]

    @contextlib.contextmanager
    def calls(self) -> Iterator[None]:
        """Run what is inside with the compiled trunk, eagerly wherever it would recompile."""
        if not self.modules:
            yield
            return
        with torch.compiler.set_stance("eager_on_recompile"):
            yield

    def restore(self) -> None:
        """Give the trunk modules back uncompiled."""
        for _name, module in self.modules:
            module._compiled_call_impl = None
        self.modules = []

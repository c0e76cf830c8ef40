"""Passes of the network after the target layer only: Ablation-CAM's ablated copies, Recipro-CAM's
masked positions, Deep Feature Factorization's concepts.

One recording pass per image stores the layer's output and the outputs of the modules that
finished before the layer started; every later pass replays them, so nothing before the layer
runs again (:class:`Tail`, which also says when that is exact and what happens otherwise).
Options and progress reporting are shared with the Score-CAM family (:mod:`camscope.perturbation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..core.concurrency import PassScope
from ..core.layers import preserved_modes
from ..core.targets import ClassHead
from ..errors import UsageError
from .masked import batch_size_for
from .options import PassCounter, Settings

log = logging.getLogger(__name__)


class _Recording:
    """Forward hooks for the recording pass of :func:`ablation_scores`."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.layer = layer
        self.modules = dict(model.named_modules())
        self.started = False
        self.calls: dict[str, int] = {}
        self.before: dict[str, Any] = {}  # first output of modules that finished before the layer
        self.after_bytes = 0
        self.layer_output: Tensor | None = None

    def hooks(self, scope: PassScope) -> list[Any]:
        target = self.modules[self.layer]
        handles = [target.register_forward_pre_hook(scope.pre_hook(self._start))]
        for name, module in self.modules.items():
            if name:
                handles.append(module.register_forward_hook(scope.hook(self._finish(name))))
        return handles

    def _start(self, _m: nn.Module, _i: Any) -> None:
        self.started = True

    def _finish(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, _i: Any, out: Any) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == self.layer:
                self.layer_output = out if isinstance(out, Tensor) else None
            elif not self.started:
                self.before.setdefault(name, out)
            elif isinstance(out, Tensor) and not list(module.children()):
                self.after_bytes += out.numel() * out.element_size()

        return hook

    def replay_set(self) -> list[str]:
        """Outermost modules that ran once, entirely before the layer: their outputs are replayed."""
        chosen: list[str] = []
        for name in sorted(self.before, key=lambda n: n.count(".")):
            if self.calls.get(name) != 1:
                continue
            if any(name.startswith(c + ".") for c in chosen):
                continue
            chosen.append(name)
        return chosen


def _replaying(value: Any) -> Callable[..., Any]:
    def forward(*_args: Any, **_kwargs: Any) -> Any:
        return value.clone() if isinstance(value, Tensor) else value

    return forward


@contextmanager
def _patched_forwards(
    patches: Mapping[nn.Module, Callable[..., Any]], scope: PassScope
) -> Iterator[None]:
    """Replace the modules' forwards in ``scope``'s passes; other passes (another thread's plain
    forward of the same model) run the original forwards."""
    saved = {m: m.__dict__.get("forward") for m in patches}

    def scoped(module: nn.Module, fn: Callable[..., Any]) -> Callable[..., Any]:
        original = saved[module] or type(module).forward.__get__(module)

        def forward(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs) if scope.owns_pass() else original(*args, **kwargs)

        return forward

    try:
        for module, fn in patches.items():
            module.forward = scoped(module, fn)
        yield
    finally:
        for module, old in saved.items():
            if old is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = old


class SuffixMismatch(RuntimeError):
    """The prefix-free pass did not reproduce the model's own output."""


class Tail:
    """The network after ``layer`` for one image: runs it on replacement outputs of the layer.

    Built by :func:`tails` from one recording pass, which stores the layer's output ``act``
    (batch 1), the model's ``logits`` and the outputs of the outermost modules that finished
    before the layer started. :meth:`run` feeds the one image, replays those outputs (nothing
    before the layer computes again) and makes the layer return a batch of replacement rows. This
    is exact when every tensor that flows from before the layer to after it does so either
    through the layer or by broadcasting over the batch (additions and products do;
    ``torch.cat`` along channels does not). Each batch carries the unchanged layer output as an
    extra first row whose logits must match the recording pass; if they do not, or the tail fails
    (shape errors), it falls back, for good, to full passes of the repeated image with the layer
    output replaced by a hook (the prefix then runs again), and logs that at INFO level.

    Ablation-CAM zeroes channels, Recipro-CAM keeps one position, Deep Feature Factorization
    scores its concepts: all through :meth:`run`.
    """

    def __init__(
        self,
        model: nn.Module,
        x1: Tensor,
        layer: str,
        rec: _Recording,
        logits: Tensor,
        settings: Settings,
        scope: PassScope,
        who: str,
    ) -> None:
        modules = dict(model.named_modules())
        act = rec.layer_output
        if act is None or rec.calls.get(layer) != 1 or act.ndim < 2:
            raise UsageError(
                f"{who} needs layer {layer!r} to run once and return a tensor "
                "(batch, channels, ...); pick another layer"
            )
        self.model, self.x1, self.target = model, x1, modules[layer]
        self.act: Tensor = act
        self.logits = logits
        self.settings, self.scope, self.who = settings, scope, who
        self.replay = {modules[n]: _replaying(rec.before[n]) for n in rec.replay_set()}
        self.per_row = rec.after_bytes + 2 * act.numel() * act.element_size()
        self.fast = True

    def batch_size(self, rows: int) -> int:
        """Replacement rows per pass for ``rows`` in all (``batch_size`` option or free memory)."""
        return self.settings.batch_size or batch_size_for(self.per_row, self.x1.device, rows + 1)

    def run(self, rows: Tensor) -> Tensor:
        """``(n, classes)`` logits of the model with the layer's output replaced by each of the
        ``n`` rows (shaped like the layer output, batch ``n``)."""
        if self.fast:
            batch = torch.cat([self.act, rows.to(self.act)])
            try:
                with (
                    _patched_forwards({**self.replay, self.target: _replaying(batch)}, self.scope),
                    self.scope.active(),
                ):
                    logits = self.settings.adapter(self.model(self.x1)).float()
                if logits.ndim != 2 or logits.shape[0] != batch.shape[0]:
                    raise SuffixMismatch(f"output {tuple(logits.shape)} for {batch.shape[0]} rows")
                tol = 1e-4 * self.logits.abs().clamp(min=1.0)
                if not bool(((logits[0] - self.logits[0]).abs() <= tol).all()):
                    raise SuffixMismatch("the unchanged row does not reproduce the model's output")
                return logits[1:]
            except (RuntimeError, UsageError) as err:
                log.info(
                    "%s: the layers after the target read tensors from before it (%s); "
                    "falling back to full forward passes",
                    self.who,
                    err,
                )
                self.fast = False
        replacement = rows.to(self.act)

        def replace(_m: nn.Module, _i: Any, _o: Any) -> Tensor:
            return replacement

        handle = self.target.register_forward_hook(self.scope.hook(replace))
        try:
            with self.scope.active():
                x = self.x1.expand(rows.shape[0], *self.x1.shape[1:])
                return self.settings.adapter(self.model(x)).float()
        finally:
            handle.remove()


@contextmanager
def tails(
    model: nn.Module, layer: str, settings: Settings, who: str
) -> Iterator[Callable[[Tensor], Tail]]:
    """Eval mode and ``torch.inference_mode()`` for the enclosed block (modes restored on exit,
    also after an error), and a function that makes the :class:`Tail` of one image ``x1``
    (batch 1) from its recording pass. ``who`` names the method in messages."""
    scope = PassScope()

    def record(x1: Tensor) -> Tail:
        rec = _Recording(model, layer)
        handles = rec.hooks(scope)
        try:
            with scope.active():
                logits = settings.adapter(model(x1)).float()
        finally:
            for h in handles:
                h.remove()
        return Tail(model, x1, layer, rec, logits, settings, scope, who)

    with preserved_modes(model), torch.inference_mode():
        model.eval()
        yield record


def ablation_scores(
    model: nn.Module,
    x: Tensor,
    layer: str,
    class_ids: Tensor,
    settings: Settings,
    *,
    skip: Tensor | None = None,
    head: ClassHead | None = None,
) -> tuple[Tensor, Tensor]:
    """Logit of each target with each channel of ``layer``'s output set to zero.

    Returns ``(ablated, base)``: ``(B, C, K)`` scores with channel ``c`` zeroed and the ``(B, K)``
    scores of the unablated model, both from eval-mode passes. Channels in ``skip`` (``(B, C)``,
    e.g. all-zero channels, whose ablation changes nothing) get the base score without a pass.
    ``head`` turns logits into target scores (``-logit`` for class 0 of a single-logit model).
    The ablated copies run through the network after the layer only (:class:`Tail`).
    """
    head = head or ClassHead()
    ids = class_ids.to(x.device)
    base = torch.empty(x.shape[0], ids.shape[1], device=x.device)
    results: list[Tensor] = []
    with tails(model, layer, settings, "ablationcam") as record:
        for img in range(x.shape[0]):
            tail = record(x[img : img + 1])
            base[img] = head.scores(tail.logits, ids[img : img + 1])[0]
            channels = tail.act.shape[1]
            todo = torch.arange(channels, device=x.device)
            if skip is not None:
                todo = todo[~skip[img].to(x.device)]
            batch = tail.batch_size(channels)
            scores = base[img].expand(channels, -1).clone()
            progress = PassCounter(int(todo.numel()), settings.progress, "ablationcam")
            try:
                for start in range(0, todo.numel(), batch):
                    chunk = todo[start : start + batch]
                    logits = tail.run(_ablated_batch(tail.act, chunk))
                    rows = ids[img][None].expand(chunk.numel(), -1)
                    scores[chunk] = head.scores(logits, rows)
                    progress.step(chunk.numel())
            finally:
                progress.close()
            results.append(scores)
    return torch.stack(results), base


def _ablated_batch(act: Tensor, channels: Tensor) -> Tensor:
    """Copies of ``act`` (batch 1) with ``channels[i]`` zeroed in row ``i``, written in one
    broadcast multiply."""
    keep = torch.ones(channels.numel(), act.shape[1], dtype=act.dtype, device=act.device)
    keep[torch.arange(channels.numel(), device=act.device), channels] = 0
    return act * keep.view(*keep.shape, *([1] * (act.ndim - 2)))

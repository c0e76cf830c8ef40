"""Ablation-CAM's passes: the network after the target layer only, on batches of ablated copies.

One recording pass per image stores the layer's output and the outputs of the modules that
finished before the layer started; every ablation pass replays them, so nothing before the layer
runs again (see :func:`ablation_scores`, which also says when that is exact and what happens
otherwise). Options and progress reporting are shared with the Score-CAM family
(:mod:`camscope.perturbation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.concurrency import PassScope
from ..core.layers import preserved_modes
from ..core.targets import ClassHead
from ..errors import UsageError
from .masked import batch_size_for
from .options import Progress, Settings

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
    """The prefix-free ablation pass did not reproduce the model's own score."""


@dataclass(frozen=True)
class Variants:
    """What the layers after the target are fed instead of one image's layer output ``act``
    (batch 1): by default Ablation-CAM's copies with one channel zeroed each
    (:data:`CHANNEL_ABLATION`); other methods pass their own (ViT-Recipro-CAM: masked tokens).

    Attributes:
        count: the number of variants of ``act``; may raise a :class:`UsageError` when the
            layer's output does not suit the method.
        rows: ``(act, indices, with_base) -> rows``: the variants ``indices`` of ``act``, after
            an unchanged first row when ``with_base`` (the check that the suffix is exact).
        name: the method, for messages and the progress bar.
        probabilities: score the rows by the target's probability (``head.probabilities``)
            instead of its logit.
    """

    count: Callable[[Tensor], int]
    rows: Callable[[Tensor, Tensor, bool], Tensor]
    name: str = "ablationcam"
    probabilities: bool = False

    def score(self, head: ClassHead, logits: Tensor, ids: Tensor) -> Tensor:
        return head.probabilities(logits, ids) if self.probabilities else head.scores(logits, ids)


def ablation_scores(
    model: nn.Module,
    x: Tensor,
    layer: str,
    class_ids: Tensor,
    settings: Settings,
    *,
    skip: Tensor | None = None,
    head: ClassHead | None = None,
    variants: Variants | None = None,
) -> tuple[Tensor, Tensor]:
    """Logit of each target with each channel of ``layer``'s output set to zero (or, with
    ``variants``, the score of each of those variants of the output instead; :class:`Variants`).

    Returns ``(ablated, base)``: ``(B, C, K)`` scores with channel ``c`` zeroed and the ``(B, K)``
    scores of the unablated model, both from eval-mode passes. Channels in ``skip`` (``(B, C)``,
    e.g. all-zero channels, whose ablation changes nothing) get the base score without a pass.
    ``head`` turns logits into target scores (``-logit`` for class 0 of a single-logit model).

    Per image, one recording pass stores the layer output and the outputs of the outermost
    modules that finished before the layer started. Each ablation pass then feeds the one image,
    replays those outputs (nothing before the layer computes again) and makes the layer return
    the batch of ablated copies. This is exact when every tensor that flows from before the layer
    to after it does so either through the layer or by broadcasting over the batch (additions and
    products do; ``torch.cat`` along channels does not). Every chunk carries one unablated row whose
    score must match the recording pass; if it does not, or the suffix fails (shape errors), the
    method falls back to full passes of the repeated image with the layer output replaced (the
    prefix then runs again), and logs that at INFO level.
    """
    modules = dict(model.named_modules())
    target = modules[layer]
    head = head or ClassHead()
    variants = variants or CHANNEL_ABLATION
    scope = PassScope()
    b = x.shape[0]
    ids = class_ids.to(x.device)
    base = torch.empty(b, ids.shape[1], device=x.device)
    results: list[Tensor] = []
    with preserved_modes(model), torch.inference_mode():
        model.eval()
        for img in range(b):
            x1 = x[img : img + 1]
            rec = _Recording(model, layer)
            handles = rec.hooks(scope)
            try:
                with scope.active():
                    logits = settings.adapter(model(x1)).float()
            finally:
                for h in handles:
                    h.remove()
            act = rec.layer_output
            if act is None or rec.calls.get(layer) != 1 or act.ndim < 2:
                raise UsageError(
                    f"{variants.name} needs layer {layer!r} to run once and return a tensor "
                    "(batch, channels, ...); pick another layer"
                )
            base[img] = variants.score(head, logits, ids[img : img + 1])[0]
            channels = variants.count(act)
            todo = torch.arange(channels, device=x.device)
            if skip is not None:
                todo = todo[~skip[img].to(x.device)]
            per_row = rec.after_bytes + 2 * act.numel() * act.element_size()
            batch = settings.batch_size or batch_size_for(per_row, x.device, channels + 1)
            replay = {modules[n]: _replaying(rec.before[n]) for n in rec.replay_set()}
            scores = base[img].expand(channels, -1).clone()
            progress = Progress(int(todo.numel()), settings.progress, variants.name)
            try:
                scores[todo] = _ablate(
                    model,
                    x1,
                    target,
                    act,
                    todo,
                    ids[img],
                    base[img],
                    replay,
                    batch,
                    settings,
                    progress,
                    head,
                    scope,
                    variants,
                )
            finally:
                progress.close()
            results.append(scores)
    return torch.stack(results), base


def _ablated_batch(act: Tensor, channels: Tensor, with_base: bool) -> Tensor:
    """Copies of ``act`` (batch 1) with ``channels[i]`` zeroed in row ``i`` (after an optional
    unablated first row), written in one broadcast multiply."""
    first = int(with_base)
    keep = torch.ones(channels.numel() + first, act.shape[1], dtype=act.dtype, device=act.device)
    keep[torch.arange(channels.numel(), device=act.device) + first, channels] = 0
    return act * keep.view(*keep.shape, *([1] * (act.ndim - 2)))


CHANNEL_ABLATION = Variants(lambda act: int(act.shape[1]), _ablated_batch)


def _ablate(
    model: nn.Module,
    x1: Tensor,
    target: nn.Module,
    act: Tensor,
    todo: Tensor,
    ids: Tensor,
    base: Tensor,
    replay: dict[nn.Module, Callable[..., Any]],
    batch: int,
    settings: Settings,
    progress: Progress,
    head: ClassHead,
    scope: PassScope,
    variants: Variants = CHANNEL_ABLATION,
) -> Tensor:
    out = torch.empty(todo.numel(), ids.numel(), device=x1.device)
    fast = True
    for start in range(0, todo.numel(), batch):
        chunk = todo[start : start + batch]
        rows: Tensor | None = None
        if fast:
            rows = variants.rows(act, chunk, True)
            try:
                with _patched_forwards({**replay, target: _replaying(rows)}, scope), scope.active():
                    logits = settings.adapter(model(x1)).float()
                if logits.shape[0] != rows.shape[0]:
                    raise SuffixMismatch(f"output batch {logits.shape[0]} != {rows.shape[0]}")
                got = variants.score(head, logits, ids[None].expand(logits.shape[0], -1))
                tol = 1e-4 * base.abs().clamp(min=1.0)
                if not bool(((got[0] - base).abs() <= tol).all()):
                    raise SuffixMismatch("the unablated row does not reproduce the model's score")
                out[start : start + chunk.numel()] = got[1:]
                progress.step(chunk.numel())
                continue
            except (RuntimeError, UsageError) as err:
                log.info(
                    "%s: the layers after the target read tensors from before it (%s); "
                    "falling back to full forward passes",
                    variants.name,
                    err,
                )
                fast = False
        rows = variants.rows(act, chunk, False)

        def replace(_m: nn.Module, _i: Any, _o: Any, r: Tensor = rows) -> Tensor:
            return r

        handle = target.register_forward_hook(scope.hook(replace))
        try:
            with scope.active():
                logits = settings.adapter(model(x1.expand(rows.shape[0], *x1.shape[1:]))).float()
        finally:
            handle.remove()
        out[start : start + chunk.numel()] = variants.score(
            head, logits, ids[None].expand(rows.shape[0], -1)
        )
        progress.step(chunk.numel())
    return out

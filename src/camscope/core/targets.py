"""What to explain: turning model outputs into one differentiable score per sample and target.

A target specification is one of

* ``"top1"`` (default) or ``"top5"`` / ``"topk:K"``: the model's own top classes, one map per class;
* an ``int``: the same class for every sample;
* a sequence of ints, one per sample;
* a ``(B, K)`` tensor or a list of ``B`` lists of ``K`` ints: ``K`` classes per sample, one map
  each (as for top-k: maps of shape ``(B, K, H, W)``), e.g. the top-5 and a ground-truth class
  in one call, which shares the forward pass and, for Score-CAM, the masked passes;
* a callable ``f(output) -> Tensor[B]`` returning one differentiable score per sample, for any
  differentiable output (segmentation masks, captioning scores, a regression head, ...), or
  ``f(output) -> Tensor[B, K]``: ``K`` scores per sample, one map each (maps ``(B, K, H, W)``,
  as for top-k), explained by one batched backward (the boxes of a detector:
  :mod:`camscope.core.detection`).

Scores are the raw logits, not softmax probabilities, as in the Grad-CAM paper (Selvaraju et al.,
2017, Sec. 3): the softmax couples classes and makes the gradient of one class depend on the others.

How logits become scores, classes and probabilities (softmax, single-logit binary and
multi-label heads; the map of class 0 of a single-logit model is the map of ``-logit``) is said
once, in :mod:`camscope.core.prediction`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor

from ..errors import TargetError
from .prediction import ClassHead, OutputAdapter, class_head, default_output_adapter

ScoreFn = Callable[[Any], Tensor]
TargetSpec = Union[str, int, Sequence[int], Sequence[Sequence[int]], Tensor, ScoreFn]

__all__ = [
    "ClassHead",
    "OutputAdapter",
    "ResolvedTargets",
    "ScoreFn",
    "TargetSpec",
    "class_head",
    "default_output_adapter",
    "parse_topk",
    "resolve_targets",
]


@dataclass(frozen=True)
class ResolvedTargets:
    """Scores to differentiate and the class ids they belong to.

    Attributes:
        scores: ``(B, K)`` differentiable scores.
        class_ids: ``(B, K)`` class indices, ``-1`` for callable targets.
        per_class: whether the request asked for several classes (top-k): maps then keep the K axis.
        head: how the logits become scores and probabilities (None for callable targets).
    """

    scores: Tensor
    class_ids: Tensor
    per_class: bool
    head: ClassHead | None = None


_TOPK = re.compile(r"^top(?:k:)?(\d+)$")


def parse_topk(spec: str) -> int | None:
    """``"top1"`` -> 1, ``"top5"`` -> 5, ``"topk:3"`` -> 3; anything else -> None."""
    match = _TOPK.match(spec.strip().lower())
    return int(match.group(1)) if match else None


def resolve_targets(
    output: Any, spec: TargetSpec, adapter: OutputAdapter | None = None, multilabel: bool = False
) -> ResolvedTargets:
    """Pick the scores to explain from a model output (see the module docstring)."""
    if callable(spec) and not isinstance(spec, Tensor):
        scores = spec(output)
        if not isinstance(scores, Tensor) or scores.ndim not in (1, 2) or 0 in scores.shape:
            raise TargetError(
                "a callable target must return one score per sample (a 1-D tensor) or K scores "
                f"per sample (B, K); got {type(scores).__name__} of shape "
                f"{tuple(getattr(scores, 'shape', ()))}"
            )
        if not scores.requires_grad:
            raise TargetError(
                "the callable target returned a score that does not depend on the explained layer; "
                "compute it from the model output with differentiable torch operations"
            )
        several = scores.ndim == 2
        scores = scores if several else scores[:, None]
        ids = torch.full(tuple(scores.shape), -1, dtype=torch.long, device=scores.device)
        return ResolvedTargets(scores, ids, per_class=several)

    logits = (adapter or default_output_adapter)(output)
    if logits.ndim != 2:
        raise TargetError(
            f"class targets need (batch, classes) scores, the model gave shape {tuple(logits.shape)}; "
            "pass a callable target that reduces the output to one score per sample"
        )
    head = class_head(logits, multilabel)
    batch, num_classes = logits.shape[0], head.num_classes(logits)
    ids, per_class = _class_ids(spec, batch, num_classes, logits, head)
    ids = ids.to(logits.device)
    return ResolvedTargets(head.scores(logits, ids), ids, per_class, head)


def _class_ids(
    spec: TargetSpec, batch: int, num_classes: int, logits: Tensor, head: ClassHead
) -> tuple[Tensor, bool]:
    if isinstance(spec, str):
        k = parse_topk(spec)
        if k is None:
            raise TargetError(
                f"unknown target {spec!r}; use 'top1', 'top5', 'topk:K', a class index, "
                "a list of class indices (one per image) or a callable"
            )
        if not 1 <= k <= num_classes:
            raise TargetError(f"target {spec!r} asks for {k} classes; the model has {num_classes}")
        return head.top(logits.detach(), k), k > 1
    several = _per_sample_lists(spec)
    if several is not None:
        return _checked(several, batch, num_classes), True
    if isinstance(spec, Tensor):
        ids = spec.reshape(-1).long()
    elif isinstance(spec, int) and not isinstance(spec, bool):
        ids = torch.full((batch,), spec, dtype=torch.long)
    elif isinstance(spec, Sequence) and all(isinstance(t, int) for t in spec):
        ids = torch.tensor(list(spec), dtype=torch.long)
    else:
        raise TargetError(f"cannot use {spec!r} as a target")
    if ids.numel() == 1 and batch > 1:
        ids = ids.expand(batch)
    if ids.numel() != batch:
        raise TargetError(f"got {ids.numel()} target classes for a batch of {batch} images")
    return _checked(ids[:, None], batch, num_classes), False


def _per_sample_lists(spec: TargetSpec) -> Tensor | None:
    """``(B, K)`` class ids from a 2-D tensor or a list of int lists; None for other specs."""
    if isinstance(spec, Tensor):
        return spec.long() if spec.ndim == 2 else None
    if isinstance(spec, Sequence) and not isinstance(spec, str) and spec:
        rows: list[Any] = list(spec)
        if all(isinstance(r, Sequence) and not isinstance(r, str) for r in rows):
            if not all(isinstance(t, int) and not isinstance(t, bool) for r in rows for t in r):
                raise TargetError("per-sample target lists must hold class indices (ints)")
            if len({len(r) for r in rows}) != 1 or not rows[0]:
                raise TargetError("per-sample target lists must all have the same, non-zero length")
            return torch.tensor([list(r) for r in rows], dtype=torch.long)
    return None


def _checked(ids: Tensor, batch: int, num_classes: int) -> Tensor:
    if ids.shape[0] != batch:
        raise TargetError(f"got target classes for {ids.shape[0]} images, the batch has {batch}")
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if bad.numel():
        raise TargetError(
            f"target class {int(bad[0])} is out of range: the model has classes 0..{num_classes - 1}"
        )
    return ids.clone()

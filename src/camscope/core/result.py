"""What :func:`camscope.explain` returns, and who says its warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from torch import Tensor

from .prediction import ClassHead, Prediction


@dataclass
class Explanation:
    """Result of :func:`explain`.

    Attributes:
        maps: method -> ``(B, H, W)`` maps in [0, 1] at the input's resolution, on its device
            (``(B, K, H, W)`` for top-k targets); several layers are fused by the mean of their
            normalised maps, renormalised
            (their product for methods registered with ``fusion="product"``: RefineCAM).
        raw: method -> signed map at layer resolution, before ReLU and normalisation (first layer
            where the method ran when several; ``(B, [K,] 3, H, W)`` input-space gradients for the
            guided methods).
        layer: the layer name used (a list when several).
        targets: ``(B,)`` class ids (``(B, K)`` for top-k; ``-1`` for callable targets). For a
            single-logit (sigmoid) model, ``0`` is the negative and ``1`` the positive class.
        scores: target scores (logits; ``-logit`` for the negative class of a single-logit model)
            in the same shape as ``targets``.
        probabilities: probability of each target (see ``probability_kind``), or None for
            callable targets.
        logits: ``(B, classes)`` model scores, detached (None for callable targets on other outputs).
        layer_maps / layer_raw: layer -> method -> map, for every layer.
        skipped: ``"method"`` or ``"method@layer"`` -> why it could not run there (empty when
            everything ran; ``explain(..., strict=True)`` raises instead).
        warnings: what the caller should know about these maps (all-zero maps and why, batch-norm
            in train mode under ``mode="as-is"``); also logged, unless the caller reports them
            itself (:func:`warnings_reported_by_caller`).
        probability_kind: ``"softmax"`` (one class per image), ``"sigmoid"`` (single-logit binary
            or ``multilabel=True``) or ``"none"`` (callable targets).
    """

    maps: dict[str, Tensor]
    raw: dict[str, Tensor]
    layer: str | list[str]
    targets: Tensor
    scores: Tensor
    probabilities: Tensor | None
    logits: Tensor | None
    layer_maps: dict[str, dict[str, Tensor]]
    layer_raw: dict[str, dict[str, Tensor]]
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    probability_kind: str = "softmax"

    @property
    def layer_names(self) -> list[str]:
        """``layer`` as a list: the names of the explained layers."""
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)

    @property
    def prediction(self) -> Prediction | None:
        """The model's :class:`~camscope.core.prediction.Prediction` for the batch (classes and
        the probability of every class under ``probability_kind``), or None without logits or
        for callable targets."""
        if self.logits is None or self.probability_kind == "none":
            return None
        logits = self.logits.detach().float()
        if self.probability_kind == "softmax":
            head = ClassHead("softmax")
        else:
            head = ClassHead("binary" if logits.shape[1] == 1 else "multilabel")
        return Prediction(logits, head, head.class_probabilities(logits))

    def class_probabilities(self) -> Tensor | None:
        """``(B, classes)`` probability of every class under ``probability_kind`` (a single-logit
        model has two classes: ``[1 - p, p]``), or None without logits or for callable targets."""
        prediction = self.prediction
        return None if prediction is None else prediction.probabilities


_CALLER_REPORTS: ContextVar[list[str] | None] = ContextVar("camscope_caller_reports", default=None)


@contextmanager
def warnings_reported_by_caller(sink: list[str] | None = None) -> Iterator[None]:
    """Within this block (this thread or task), :func:`camscope.explain` logs the warnings it
    returns in :attr:`Explanation.warnings` at debug level only, and appends them to ``sink``
    when one is given: the caller reports them itself, once, naming the files
    (:func:`camscope.data.walk.naming_warnings`), instead of once more per call and augmented
    copy."""
    token = _CALLER_REPORTS.set([] if sink is None else sink)
    try:
        yield
    finally:
        _CALLER_REPORTS.reset(token)


def log_warning(logger: logging.Logger, message: str) -> None:
    """Log a warning that also goes into :attr:`Explanation.warnings` (see
    :func:`warnings_reported_by_caller`)."""
    sink = _CALLER_REPORTS.get()
    if sink is None:
        logger.warning("%s", message)
    else:
        logger.debug("%s", message)
        sink.append(message)

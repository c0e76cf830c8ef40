"""From model outputs to classes and probabilities: the one place that reads logits.

Every command, the server and the library turn a model's output into a :class:`Prediction`
here, and nowhere else does ``softmax``, ``sigmoid``, ``argmax`` or ``topk`` run over logits
(``tests/core/test_prediction_path.py`` walks the source tree and enforces it).

Outputs. :func:`default_output_adapter` finds the class scores in what a model returns: a tensor,
an object with a ``logits`` attribute (Hugging Face ``ModelOutput``, torchvision's
``InceptionOutputs``), a mapping with a ``"logits"`` key, or the first tensor of a tuple or list.

Heads (:class:`ClassHead`):

* ``softmax`` (default): one class per image, :math:`p = \\mathrm{softmax}(z)`;
* ``binary``: a single-logit (sigmoid) classifier, ``(B, 1)`` outputs. It has two classes:
  ``1`` (positive) with score :math:`+z` and :math:`p_1 = \\sigma(z)`, and ``0`` (negative) with
  score :math:`-z` and :math:`p_0 = \\sigma(-z) = 1 - p_1`; the top class is the side with
  :math:`p \\ge 0.5` (class 1 on a tie);
* ``multilabel`` (``multilabel=True``): independent sigmoids, :math:`p_c = \\sigma(z_c)`; ranks
  are those of the logits (the sigmoid is monotonic).

Scores for gradients are the raw logits (Selvaraju et al., 2017, Sec. 3), never probabilities.

Example:
    >>> import torch
    >>> p = predict(torch.tensor([[2.0, 0.0, -1.0]]))
    >>> p.classes.tolist(), round(float(p.probabilities[0, 0]), 3), p.probability_kind
    ([0], 0.844, 'softmax')
    >>> predict({"logits": torch.tensor([[-3.0]])}).classes.tolist()  # one logit: "no"
    [0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError

OutputAdapter = Callable[[Any], Tensor]
HEAD_KINDS = ("softmax", "binary", "multilabel")


def default_output_adapter(output: Any) -> Tensor:
    """Return the class-score tensor of a model output (see the module docstring)."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), Tensor):
            return output["logits"]
        raise UsageError(
            f"the model returned a mapping with keys {sorted(map(str, output))} and no 'logits'; "
            "pass output_adapter=lambda out: out['<key>'] to say which entry holds the scores."
        )
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    raise UsageError(
        f"cannot find class scores in a model output of type {type(output).__name__}; "
        "pass output_adapter=<callable returning a (batch, classes) tensor>."
    )


@dataclass(frozen=True)
class ClassHead:
    """How a classifier's logits become class scores and probabilities (see the module doc).

    Attributes:
        kind: ``"softmax"``, ``"binary"`` (one sigmoid logit, two classes) or ``"multilabel"``.
    """

    kind: str = "softmax"

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")

    @property
    def probability_kind(self) -> str:
        """``"softmax"`` or ``"sigmoid"``: what the probabilities are."""
        return "softmax" if self.kind == "softmax" else "sigmoid"

    def num_classes(self, logits: Tensor) -> int:
        return 2 if self.kind == "binary" else int(logits.shape[1])

    def scores(self, logits: Tensor, class_ids: Tensor) -> Tensor:
        """``(n, K)`` differentiable scores of ``class_ids`` from ``(n, outputs)`` logits."""
        ids = class_ids.to(logits.device)
        if self.kind == "binary":
            sign = (2 * ids - 1).to(logits.dtype)  # class 1: +logit, class 0: -logit
            return logits[:, :1] * sign
        return logits.gather(1, ids)

    def probabilities(self, logits: Tensor, class_ids: Tensor) -> Tensor:
        """``(n, K)`` probabilities of ``class_ids``."""
        if self.kind == "softmax":
            return logits.softmax(1).gather(1, class_ids.to(logits.device))
        return self.scores(logits, class_ids).sigmoid()

    def log_probabilities(self, logits: Tensor, class_ids: Tensor) -> Tensor:
        """``(n, K)`` differentiable log-probabilities of ``class_ids``: ``log_softmax``, or
        ``log sigmoid`` of the scores for sigmoid heads (``log(1 - p) = log sigmoid(-z)``)."""
        if self.kind == "softmax":
            return logits.log_softmax(1).gather(1, class_ids.to(logits.device))
        return F.logsigmoid(self.scores(logits, class_ids))

    def class_probabilities(self, logits: Tensor) -> Tensor:
        """``(n, classes)`` probability of every class (binary: ``[1 - p, p]``)."""
        if self.kind == "softmax":
            return logits.softmax(1)
        if self.kind == "binary":
            p = logits[:, :1].sigmoid()
            return torch.cat([1 - p, p], dim=1)
        return logits.sigmoid()

    def top(self, logits: Tensor, k: int) -> Tensor:
        """``(n, k)`` class ids ranked by score (binary: the side with ``p >= 0.5`` first)."""
        if self.kind == "binary":
            positive = (logits[:, :1] >= 0).long()
            return torch.cat([positive, 1 - positive], dim=1)[:, :k]
        return logits.topk(k, dim=1).indices


def class_head(logits: Tensor, multilabel: bool = False) -> ClassHead:
    """The :class:`ClassHead` of ``(B, outputs)`` logits: one column is a binary sigmoid head."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        return ClassHead("binary")
    return ClassHead("multilabel" if multilabel else "softmax")


@dataclass(frozen=True)
class Prediction:
    """What a classifier says about a batch: its classes and their probabilities.

    Attributes:
        logits: ``(B, outputs)`` float32 scores, detached, on the model's device.
        head: how they become classes and probabilities (:class:`ClassHead`).
        probabilities: ``(B, classes)`` probability of every class (a single-logit model has two
            classes, ``[1 - p, p]``).
    """

    logits: Tensor
    head: ClassHead
    probabilities: Tensor

    @property
    def probability_kind(self) -> str:
        """``"softmax"`` or ``"sigmoid"``."""
        return self.head.probability_kind

    @property
    def num_classes(self) -> int:
        return self.head.num_classes(self.logits)

    @property
    def classes(self) -> Tensor:
        """``(B,)`` the top-1 class of each image."""
        return self.head.top(self.logits, 1)[:, 0]

    def top(self, k: int = 5) -> tuple[Tensor, Tensor]:
        """``(values, ids)``, both ``(B, min(k, classes))``: the top classes and their
        probabilities, best first."""
        ids = self.head.top(self.logits, min(k, self.num_classes))
        return self.probabilities.gather(1, ids), ids

    @property
    def binary(self) -> bool:
        """Whether this is a single-logit (sigmoid) model: class 1 positive, class 0 negative."""
        return self.head.kind == "binary"

    def ranked(self, index: int, k: int = 5) -> list[tuple[int, float]]:
        """Image ``index``'s ``min(k, classes)`` most probable ``(class, probability)`` pairs,
        best first (the order of :meth:`top`).

        >>> predict(torch.tensor([[0.0], [3.0]])).ranked(1)  # one logit: classes 1 and 0
        [(1, 0.9525741338729858), (0, 0.04742586612701416)]
        """
        row = self.logits[index : index + 1]
        ids = self.head.top(row, min(k, self.num_classes))[0]
        values = self.probabilities[index].index_select(0, ids.to(self.probabilities.device))
        return [(int(c), float(v)) for c, v in zip(ids.tolist(), values.tolist())]

    def probability(self, index: int, class_id: int) -> float:
        """The probability of ``class_id`` for image ``index``."""
        return float(self.probabilities[index, class_id])

    def best_of(self, index: int, accepted: Sequence[int]) -> int:
        """Of the ``accepted`` classes of image ``index`` (a data set's label may map to several
        model classes), the one the model finds most probable; ties go to the first listed.

        Raises:
            ValueError: no accepted class, or one the model does not have.
        """
        if not accepted:
            raise ValueError("best_of needs at least one accepted class")
        bad = [c for c in accepted if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"class {bad[0]} is out of range: the model has {self.num_classes}")
        ids = torch.tensor(list(accepted), dtype=torch.long, device=self.probabilities.device)
        values = self.probabilities[index].index_select(0, ids)
        return int(accepted[int(torch.nonzero(values == values.max())[0, 0])])

    def rank(self, index: int, class_id: int) -> int:
        """1 + the number of classes the model finds more probable than ``class_id``."""
        row = self.probabilities[index]
        return 1 + int((row > row[class_id]).sum())

    def correct(self, index: int, accepted: Sequence[int]) -> bool:
        """Whether image ``index``'s top-1 class is one of the ``accepted`` classes."""
        return int(self.classes[index]) in set(accepted)

    def select(self, rows: Tensor | Sequence[int]) -> Prediction:
        """The prediction of some images only."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.logits.device)
        return Prediction(
            self.logits.index_select(0, index), self.head, self.probabilities.index_select(0, index)
        )

    def cpu(self) -> Prediction:
        return Prediction(self.logits.cpu(), self.head, self.probabilities.cpu())


def predict(
    output: Any, *, multilabel: bool = False, adapter: OutputAdapter | None = None
) -> Prediction:
    """The :class:`Prediction` of a model output (tensor, tuple, dict, ``ModelOutput``; a single
    logit is a binary sigmoid head, ``multilabel`` makes every class an independent sigmoid).

    Raises:
        UsageError: no class scores in the output, or scores that are not ``(batch, classes)``.
    """
    logits = (adapter or default_output_adapter)(output)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] < 1:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise UsageError(
            f"class predictions need (batch, classes) scores; the model gave {shape}. Pass an "
            "output adapter that returns them (or, for detection and segmentation models, the "
            "matching task)"
        )
    logits = logits.detach().float()
    head = class_head(logits, multilabel)
    return Prediction(logits, head, head.class_probabilities(logits))


def classify(
    model: nn.Module,
    x: Tensor,
    *,
    multilabel: bool = False,
    adapter: OutputAdapter | None = None,
    mode: str = "eval",
) -> Prediction:
    """Run ``model`` on ``x`` without gradients and return its :class:`Prediction`.

    ``mode="eval"`` (default) classifies in eval mode and restores the model's own modes
    afterwards (also after an exception), as :func:`camscope.explain` does; ``"as-is"`` keeps
    them. The model's lock (:func:`camscope.core.concurrency.model_lock`) is held meanwhile, so
    an :func:`explain` call on the same model in another thread never sees its modes change.
    """
    from .layers import no_grad_forward

    output = no_grad_forward(model, x, mode)
    return predict(output, multilabel=multilabel, adapter=adapter)

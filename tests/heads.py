"""Tiny random classifiers with every kind of head and output the prediction path reads.

Each factory returns ``(model, ModelSpec)``, so commands load them as ``heads:<factory>``
(``tests`` is on the path) and the library gets the same objects:

* ``softmax``: five classes, a plain tensor;
* ``yes`` / ``no``: one logit (a sigmoid model) near +5 / -5, so it says "yes" with p ~ 0.99
  (class 1) or "no" with p ~ 0.99 (class 0) on every image;
* ``multilabel``: five independent sigmoids (read with ``multilabel=True``);
* ``tuple_output``: the logits first in a tuple, an auxiliary tensor second;
* ``dict_output``: ``{"logits": ..., "features": ...}``, as many hub models return.

Weights are random (seeded), so the classes differ between images; the single-logit heads have
small weights and a large bias, so the sign never flips but the gradients are not zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from camscope.models import ModelSpec

CLASSES = ["cat", "dog", "bird", "fish", "frog"]
SIZE = (16, 16)


class Head(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> global average pooling -> linear."""

    def __init__(self, outputs: int, bias: float | None = None, wrap: str = "") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, outputs)
        if bias is not None:
            with torch.no_grad():
                self.fc.weight.mul_(0.05)
                self.fc.bias.fill_(bias)
        self.wrap = wrap

    def forward(self, x: Tensor) -> Any:
        pooled = self.pool(self.features(x)).flatten(1)
        logits = self.fc(pooled)
        if self.wrap == "tuple":
            return logits, pooled
        if self.wrap == "dict":
            return {"logits": logits, "features": pooled}
        return logits


def _spec(name: str, classes: list[str]) -> ModelSpec:
    return ModelSpec(name=name, input_size=SIZE, class_names=list(classes), source="test")


def softmax() -> tuple[nn.Module, ModelSpec]:
    return Head(5).eval(), _spec("softmax", CLASSES)


def yes() -> tuple[nn.Module, ModelSpec]:
    return Head(1, bias=5.0).eval(), _spec("yes", ["no", "yes"])


def no() -> tuple[nn.Module, ModelSpec]:
    return Head(1, bias=-5.0).eval(), _spec("no", ["no", "yes"])


def multilabel() -> tuple[nn.Module, ModelSpec]:
    return Head(5).eval(), _spec("multilabel", CLASSES)


def tuple_output() -> tuple[nn.Module, ModelSpec]:
    return Head(5, wrap="tuple").eval(), _spec("tuple", CLASSES)


def dict_output() -> tuple[nn.Module, ModelSpec]:
    return Head(5, wrap="dict").eval(), _spec("dict", CLASSES)


#: factory name -> whether the model is read as multi-label
HEADS = {
    "softmax": False,
    "yes": False,
    "no": False,
    "multilabel": True,
    "tuple_output": False,
    "dict_output": False,
}


def load(name: str) -> tuple[nn.Module, ModelSpec]:
    """The model and spec of factory ``name``."""
    return globals()[name]()

"""Optimizers and the learning-rate schedule.

* AdamW (Loshchilov & Hutter, ICLR 2019) or SGD with momentum and Nesterov's update; weight decay
  applies to weights, not to biases and normalisation parameters (every tensor with one dimension
  or fewer), as in timm and most ImageNet recipes.
* A per-step schedule: linear warm-up from ``lr / W`` to ``lr`` over the first ``W`` steps, then
  cosine decay to ``min_lr`` at the last step (Loshchilov & Hutter, SGDR, ICLR 2017, without
  restarts):

.. math::
    \\eta_t = \\eta_{min} + (\\eta - \\eta_{min})\\,\\tfrac12\\,(1 + \\cos(\\pi\\,
    \\tfrac{t - W}{T - W}))

Example:
    >>> round(lr_factor(0, warmup=10, total=110, min_ratio=0.0), 3), lr_factor(60, 10, 110, 0.0)
    (0.1, 0.5)
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = True,
) -> torch.optim.Optimizer:
    """AdamW or SGD over ``model``'s trainable parameters, without decay on 1-D tensors."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """The multiple of the base learning rate at (0-based) ``step``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedule(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float,
    lr: float,
    min_lr: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine as a :class:`torch.optim.lr_scheduler.LambdaLR`, stepped once per batch."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, round(warmup_epochs * steps_per_epoch))
    factor = partial(lr_factor, warmup=warmup, total=total, min_ratio=min_lr / lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

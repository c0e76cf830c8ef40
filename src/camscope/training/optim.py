"""Optimizers and the learning-rate schedule, from timm's helpers.

* AdamW (Loshchilov & Hutter, ICLR 2019) or SGD with momentum and Nesterov's update; weight decay
  applies to weights, not to biases and normalisation parameters (every tensor with one dimension
  or fewer): :func:`timm.optim.param_groups_weight_decay`.
* A per-step schedule, :class:`timm.scheduler.CosineLRScheduler` stepped once per batch: linear
  warm-up over the first ``W`` steps, ``lr (t + 1) / (W + 1)`` at step ``t``, then cosine decay
  from ``lr`` to ``min_lr`` over the remaining ``T - W`` steps (Loshchilov & Hutter, SGDR,
  ICLR 2017, without restarts):

.. math::
    \\eta_t = \\eta_{min} + (\\eta - \\eta_{min})\\,\\tfrac12\\,(1 + \\cos(\\pi\\,
    \\tfrac{t - W}{T - W}))

:class:`StepSchedule` gives timm's scheduler torch's ``step()`` / ``state_dict()`` protocol:
it counts the optimizer updates itself, so a checkpoint stores one number.

Example:
    >>> model = torch.nn.Linear(2, 2)
    >>> optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    >>> schedule = build_schedule(optimizer, 5, 2, warmup_epochs=1.0, lr=0.1, min_lr=0.0)
    >>> round(optimizer.param_groups[0]["lr"], 4)  # step 0 of a 5-step warm-up: 0.1 / 6
    0.0167
"""

from __future__ import annotations

from typing import Any

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
    from timm.optim import param_groups_weight_decay

    groups = param_groups_weight_decay(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


class StepSchedule:
    """A timm scheduler stepped once per optimizer update, with torch's ``step()`` protocol."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.updates = 0

    def step(self) -> None:
        self.updates += 1
        self.scheduler.step_update(self.updates)

    def state_dict(self) -> dict[str, int]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # "last_epoch": a checkpoint of torch's LambdaLR (earlier camscope) counted the same steps
        self.updates = int(state.get("updates", state.get("last_epoch", 0)))
        self.scheduler.step_update(self.updates)


def build_schedule(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float,
    lr: float,
    min_lr: float,
) -> StepSchedule:
    """Warm-up + cosine (see the module docstring), stepped once per batch."""
    from timm.scheduler import CosineLRScheduler

    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, round(warmup_epochs * steps_per_epoch))
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max(1, total - warmup),
        lr_min=min_lr,
        warmup_t=warmup,
        warmup_lr_init=lr / (warmup + 1),
        warmup_prefix=True,
        t_in_epochs=False,
    )
    scheduler.step_update(0)
    return StepSchedule(scheduler)

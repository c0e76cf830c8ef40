"""One training epoch and one validation pass: the hot path.

Per step: the uint8 batch goes to the device, is normalised there, runs forward under autocast
(when mixed precision is on), backward through the AMP scaler, optional gradient clipping, the
optimizer step and the per-step learning-rate schedule. Loss and accuracy are summed on the device
(no host sync per step); the progress bar reads them at most twice a second. The time spent
waiting for the DataLoader is measured separately (``data_wait``), so a slow input pipeline shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.prediction import predict
from .transforms import Normalize

Batch = tuple[Tensor, Tensor, list[tuple[str, str]]]


@dataclass
class Step:
    """Everything one optimisation step needs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    criterion: nn.Module
    normalize: Normalize
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    clip_grad: float | None = None
    channels_last: bool = False


@dataclass
class EpochStats:
    """Sums over one pass (this process's share under DDP)."""

    loss_sum: float = 0.0
    correct: int = 0
    images: int = 0
    seconds: float = 0.0
    data_wait: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    confusion: Tensor | None = None

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.images)


def _walk(
    step: Step, batches: Iterable[Batch], stats: EpochStats
) -> Iterator[tuple[Tensor, Tensor]]:
    """The non-empty batches normalised on the device (channels-last if asked) with their labels;
    the wait for each batch, its skipped files and its images counted in ``stats``."""
    iterator = iter(batches)
    while True:
        wait_start = time.perf_counter()
        try:
            images, labels, skipped = next(iterator)
        except StopIteration:
            return
        stats.data_wait += time.perf_counter() - wait_start
        stats.skipped.extend(skipped)
        if labels.numel() == 0:
            continue
        x = step.normalize(images.to(step.device, non_blocking=True))
        if step.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        stats.images += labels.shape[0]
        yield x, labels.to(step.device, non_blocking=True)


def _autocast(step: Step) -> torch.autocast:
    """The mixed-precision context of training and validation alike (off without a dtype)."""
    return torch.autocast(
        step.device.type, dtype=step.autocast_dtype, enabled=step.autocast_dtype is not None
    )


def train_epoch(
    step: Step,
    batches: Iterable[Batch],
    on_progress: Callable[[int, float | None, float | None], None] | None = None,
) -> EpochStats:
    """Train one epoch over ``batches``.

    ``on_progress(images, loss, acc)`` is called after every step with the step's image count;
    the running loss and accuracy come about twice a second (None in between).
    """
    model = step.model
    model.train()
    loss_sum = torch.zeros((), device=step.device)
    correct = torch.zeros((), dtype=torch.long, device=step.device)
    stats = EpochStats()
    start = time.perf_counter()
    last_report = 0.0  # the first step reports, then about twice a second
    for x, y in _walk(step, batches, stats):
        with _autocast(step):
            logits = model(x)
            loss = step.criterion(logits, y)
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        if step.clip_grad is not None:
            step.scaler.unscale_(step.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), step.clip_grad)
        step.scaler.step(step.optimizer)
        step.scaler.update()
        step.scheduler.step()
        n = y.shape[0]
        loss_sum += loss.detach().float() * n
        correct += (predict(logits).classes == y).sum()
        if on_progress is not None:
            if time.perf_counter() - last_report > 0.5:  # reading the sums syncs the device
                last_report = time.perf_counter()
                on_progress(n, float(loss_sum) / stats.images, int(correct) / stats.images)
            else:
                on_progress(n, None, None)
    stats.loss_sum = float(loss_sum)
    stats.correct = int(correct)
    stats.seconds = time.perf_counter() - start
    return stats


@torch.no_grad()
def evaluate(step: Step, batches: Iterable[Batch], num_classes: int) -> EpochStats:
    """Validation: summed cross-entropy (no label smoothing), accuracy and the confusion matrix."""
    step.model.eval()
    loss_sum = torch.zeros((), device=step.device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=step.device)
    stats = EpochStats()
    start = time.perf_counter()
    for x, y in _walk(step, batches, stats):
        with _autocast(step):
            logits = step.model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        predicted = predict(logits).classes
        confusion += torch.bincount(y * num_classes + predicted, minlength=num_classes**2)
    stats.confusion = confusion.view(num_classes, num_classes)
    stats.loss_sum = float(loss_sum)
    stats.correct = int(stats.confusion.diagonal().sum())
    stats.seconds = time.perf_counter() - start
    return stats

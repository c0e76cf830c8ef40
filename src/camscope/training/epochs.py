"""The epoch loop of a run: loaders, optimizer, schedule, mixed precision, DDP, early stopping,
checkpoints after every epoch, and the run folder's reports at the end."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..core.precision import autocast_dtype as precision_dtype
from ..data.progress import Progress
from ..errors import DatasetError
from ..models.spec import model_device
from ..outputs import write_json
from .checkpoint import BEST_WEIGHTS, CHECKPOINT, TrainingState, restore, save_best, save_checkpoint
from .config import TrainConfig
from .data import TrainingData
from .distributed import World, barrier, gather_lists, sum_tensor
from .loop import EpochStats, Step, evaluate, train_epoch
from .optim import build_optimizer, build_schedule
from .result import (
    TrainResult,
    per_class_accuracy,
    plot_confusion,
    plot_curves,
    read_result,
    write_metrics,
)
from .transforms import ImageTransform, LabelledImages, Normalize, collate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """What stays fixed while a run trains: its settings and folder, the data, the model (not
    wrapped for DDP), where it trains, the normalisation and the CAM-layer check."""

    config: TrainConfig
    out: Path
    data: TrainingData
    model: nn.Module
    device: torch.device
    world: World
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cam_layer: dict[str, Any]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: float32 throughout); ``auto``
    is fp16 on a CUDA GPU and float32 elsewhere, the names are core.precision's."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return precision_dtype(precision, device)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of every generator at the start of ``epoch`` on ``rank``."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (all devices)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loaders(run: Run) -> tuple[DataLoader, DataLoader, DistributedSampler]:
    config, data, world = run.config, run.data, run.world
    size = int(config.image_size or 0)
    mode = config.augment
    if mode == "auto":
        mode = "pad-crop" if size <= 64 else "crop"
    train_set = LabelledImages(
        data.train.items, ImageTransform(size, "bilinear", "eval" if mode == "none" else mode)
    )
    val_set = LabelledImages(data.val.items, ImageTransform(size, "bilinear", "eval"))
    sampler: DistributedSampler = DistributedSampler(
        train_set, num_replicas=world.size, rank=world.rank, shuffle=True, seed=config.seed
    )
    common: dict[str, Any] = {
        "num_workers": config.workers,
        "collate_fn": collate,
        "pin_memory": run.device.type == "cuda",
    }
    train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, **common)
    shard = Subset(val_set, list(range(world.rank, len(val_set), world.size)))
    val_loader = DataLoader(shard, batch_size=2 * config.batch_size, shuffle=False, **common)
    return train_loader, val_loader, sampler


def _better(config: TrainConfig, row: dict[str, float], progress: TrainingState) -> bool:
    value, best = row[config.monitor], progress.best_value
    if best is None:
        return True
    return value < best if config.monitor == "val_loss" else value > best


def run_epochs(run: Run, progress: TrainingState, state: dict[str, Any] | None) -> TrainResult:
    """Train from ``progress.epoch + 1`` to ``config.epochs`` (or ``stop_after`` epochs, or early
    stopping) and write the run folder's files (rank 0)."""
    config, out, model, device, world = run.config, run.out, run.model, run.device, run.world
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    train_loader, val_loader, sampler = _loaders(run)
    lr = config.lr or config.default_lr
    optimizer = build_optimizer(
        model, config.optimizer, lr, config.decay, config.momentum, config.nesterov
    )
    schedule = build_schedule(
        optimizer, len(train_loader), config.epochs, config.warmup_epochs, lr, config.min_lr
    )
    dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step = Step(
        net,
        optimizer,
        schedule,
        scaler,
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        Normalize(run.mean, run.std, device),
        device,
        dtype,
        config.clip_grad,
        channels_last,
    )
    if state is not None:
        restore(step, state)
    show = config.progress and world.main
    throughput: list[tuple[int, float, float]] = []
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        if progress.stopped_early or (
            config.stop_after is not None and len(throughput) >= config.stop_after
        ):
            break
        seed_everything(epoch_seed(config.seed, epoch, world.rank))
        sampler.set_epoch(epoch)
        with Progress(len(sampler), f"epoch {epoch}/{config.epochs}", enabled=show) as bar:
            train = train_epoch(step, train_loader, _updater(bar) if show else None)
        val = evaluate(step, val_loader, len(run.data.classes))
        row, confusion = _epoch_row(world, step, epoch, train, val)
        for name, reason in gather_lists(world, train.skipped + val.skipped):
            if name not in progress.skipped:
                progress.skipped[name] = reason
                if world.main:
                    log.warning("skipped unreadable image %s: %s", name, reason)
        if row["train_images"] == 0:
            raise DatasetError(f"no training image of {config.data} could be read")
        throughput.append((int(row.pop("train_images")), train.seconds, train.data_wait))
        progress.history.append(row)
        progress.epoch = epoch
        if _better(config, row, progress):
            progress.best_epoch, progress.best_value = epoch, row[config.monitor]
            progress.best_confusion = confusion
            progress.bad_epochs = 0
            if world.main:
                progress.best_sha256 = save_best(
                    out / BEST_WEIGHTS, model, epoch, progress.best_sha256
                )
        else:
            progress.bad_epochs += 1
        if config.patience is not None and progress.bad_epochs >= config.patience:
            progress.stopped_early = True
        if world.main:
            save_checkpoint(out / CHECKPOINT, model, step, progress)
            write_metrics(out / "metrics.csv", progress.history)
            if show:
                _epoch_line(row, config.epochs, throughput[-1])
    if world.main:
        _finish(run, progress, throughput)
    barrier(world)
    return read_result(out)


def _epoch_row(
    world: World, step: Step, epoch: int, train: EpochStats, val: EpochStats
) -> tuple[dict[str, Any], list[list[int]]]:
    counts = [train.loss_sum, train.correct, train.images, val.loss_sum, val.correct, val.images]
    totals = sum_tensor(
        world, torch.tensor(counts, dtype=torch.float64, device=step.device)
    ).tolist()
    assert val.confusion is not None
    confusion = sum_tensor(world, val.confusion.clone()).cpu().tolist()
    t_loss, t_correct, t_images, v_loss, v_correct, v_images = totals
    row = {
        "epoch": epoch,
        "train_loss": t_loss / max(1.0, t_images),
        "train_acc": t_correct / max(1.0, t_images),
        "val_loss": v_loss / max(1.0, v_images),
        "val_acc": v_correct / max(1.0, v_images),
        "lr": float(step.optimizer.param_groups[0]["lr"]),
        "seconds": train.seconds + val.seconds,
        "train_images": t_images,
    }
    return row, confusion


def _updater(bar: Progress) -> Callable[[int, float | None, float | None], None]:
    def update(images: int, loss: float | None, acc: float | None) -> None:
        if loss is not None:
            bar.note(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        bar.advance(images)

    return update


def _epoch_line(row: dict[str, float], epochs: int, speed: tuple[int, float, float]) -> None:
    from tqdm import tqdm

    images, seconds, wait = speed
    tqdm.write(
        f"epoch {int(row['epoch'])}/{epochs}: train loss {row['train_loss']:.4f} acc "
        f"{row['train_acc']:.3f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} | "
        f"lr {row['lr']:.3g} | {row['seconds']:.1f} s, {images / max(seconds, 1e-9):.0f} img/s, "
        f"data wait {100 * wait / max(seconds, 1e-9):.0f}%",
        file=sys.stderr,
    )


def _finish(run: Run, progress: TrainingState, throughput: list[tuple[int, float, float]]) -> None:
    config, out, data, model = run.config, run.out, run.data, run.model
    if progress.stopped_early:
        status = "stopped early"
    elif progress.epoch >= config.epochs:
        status = "finished"
    else:
        status = "paused"
    history = progress.history
    title = f"{out.name}: {config.arch}, {config.data}"
    if history:
        plot_curves(out / "curves.png", history, title)
    if progress.best_confusion:
        plot_confusion(out / "confusion.png", progress.best_confusion, data.classes, title)
    best = next((r for r in history if r["epoch"] == progress.best_epoch), None)
    images, seconds, wait = (sum(column) for column in zip((0, 0.0, 0.0), *throughput))
    summary: dict[str, Any] = {
        "status": status,
        "epochs_done": progress.epoch,
        "epochs_planned": config.epochs,
        "best": None if best is None else {k: best[k] for k in ("epoch", "val_acc", "val_loss")},
        "per_class_accuracy": per_class_accuracy(progress.best_confusion, data.classes),
        "skipped_files": {
            "count": len(progress.skipped),
            "files": [{"file": k, "reason": v} for k, v in sorted(progress.skipped.items())],
        },
        "cam_layer": run.cam_layer,
        "this_session": {
            "epochs": len(throughput),
            "train_images_per_second": round(images / seconds, 1) if seconds else None,
            "data_wait_share": round(wait / seconds, 4) if seconds else None,
        },
        "history": history,
    }
    if status != "paused" and config.explain and (out / BEST_WEIGHTS).exists():
        from safetensors.torch import load_file

        from .grids import write_grids

        model.load_state_dict(load_file(str(out / BEST_WEIGHTS), device=str(model_device(model))))
        model.eval()
        summary["explain"] = write_grids(
            model,
            data.val.items,
            data.classes,
            config.explain,
            out / "explain",
            image_size=int(config.image_size or 0),
            interpolation="bilinear",
            mean=run.mean,
            std=run.std,
        )
    write_json(out / "summary.json", summary)

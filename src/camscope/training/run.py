"""``train(config)``: a whole run, resumable, into its run folder.

The run folder (``config.out``):

* ``config.json``: the ``"camscope_run"`` marker, architecture, classes, image size, mean/std,
  interpolation, stem, seed, library versions, the data summary and every training option; it
  makes the folder a model (:mod:`camscope.models.run_folder`);
* ``model.safetensors``: the weights of the best validation epoch (``monitor``);
* ``last.ckpt``: the state after the last finished epoch (:mod:`.checkpoint`);
* ``metrics.csv``, ``curves.png``, ``confusion.png`` (best epoch), ``summary.json`` (status,
  per-class accuracy, skipped files, throughput, the CAM-layer check), ``explain/`` with
  ``explain=N``.

Determinism: the model is initialised from ``seed``; before each epoch every random generator is
reseeded from ``(seed, epoch, rank)`` and the sampler shuffles with ``seed + epoch``. An epoch
therefore computes the same thing whether the run got there straight or through ``--resume``:
on CPU, 2 epochs plus a resume to 4 give the same weights and ``metrics.csv`` (but the seconds) as
4 straight epochs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..models.architectures import build_classifier, map_check
from ..models.recipe import choose_device
from ..models.run_folder import FORMAT_VERSION, MARKER
from ..models.spec import IMAGENET_MEAN, IMAGENET_STD
from ..outputs import output_lock
from .checkpoint import CHECKPOINT, TrainingState, check_best, load_checkpoint
from .config import TrainConfig
from .data import TrainingData, load_training_data
from .distributed import World, barrier, join, launch, leave
from .epochs import Run, run_epochs, seed_everything
from .result import TrainResult, read_result

log = logging.getLogger(__name__)

DEFAULT_SIZE = {"cifar10": 32, "cifar100": 32, "builtin": 64}


def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says (see :class:`TrainConfig`) and return what the run folder holds.

    With ``config.devices > 1`` outside ``torchrun``, starts that many processes with torchrun's
    launcher (:mod:`.distributed`); under ``torchrun`` every process calls this function. The run
    folder is locked for the run (by rank 0, or by the process that starts the others): a second
    run on it is refused at once.

    Raises:
        UsageError / DatasetError: bad options or data (each names the culprit), a run folder that
            already holds a run without ``resume``, or a ``resume`` with other settings.
    """
    launching = config.devices > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1
    if launching:
        _check_gpus_for(config.devices, config.device)
    if int(os.environ.get("RANK", "0")) != 0:  # a torchrun rank that writes nothing
        return _train(config)
    with output_lock(config.out, "camscope train"):  # rank 0 (or the launcher) holds the folder
        if launching:
            launch(_train_in_process, config.to_dict(), config.devices)
            return read_result(Path(config.out))
        return _train(config)


def _train_in_process(settings: dict[str, Any]) -> str:
    _train(TrainConfig.from_dict(settings))  # WORLD_SIZE is set here: no second launch
    return settings["out"]


def resume_config(out: str | Path, **changes: Any) -> TrainConfig:
    """The stored configuration of the run in ``out``, with ``changes`` applied (``resume=True``).

    The run resumes from wherever its folder is now: ``out`` may be spelled in any way, from any
    working directory, after the folder was moved or copied (see :mod:`.config`).

    Raises:
        UsageError: no run in ``out``, or a change that would alter what an epoch computes.
    """
    folder = Path(out)
    stored = _stored(folder)["training"]
    base = TrainConfig.from_dict({**stored, "out": str(folder), "resume": True})
    wanted = TrainConfig.from_dict({**base.to_dict(), **changes, "resume": True})
    wanted.check_resume(stored, folder)
    return wanted


def _stored(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of the run in ``folder``, refused unless ``camscope train`` wrote it."""
    config = folder / "config.json"
    if not config.is_file():
        raise UsageError(f"--resume: {str(folder)!r} holds no run to continue (no config.json)")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(
            f"--resume: cannot read {str(config)!r} ({err}); restore it or start a new --out"
        ) from None
    if (
        not isinstance(data, dict)
        or MARKER not in data
        or not isinstance(data.get("training"), dict)
    ):
        raise UsageError(f"--resume: {str(config)!r} was not written by camscope train")
    return data


def _check_folder(config: TrainConfig) -> Path:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run")
    started = (out / CHECKPOINT).exists() or (out / "config.json").exists()
    if started and not config.resume:
        raise UsageError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if config.resume:
        config.check_resume(_stored(out)["training"], out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_gpus_for(processes: int, device: str) -> None:
    """One GPU per process on CUDA (NCCL refuses two ranks on one GPU); said before launching."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not cuda:
        return
    if device.startswith("cuda:"):
        raise UsageError(
            f"--devices {processes} puts one process on each GPU; give --device cuda "
            f"(not {device}), or set CUDA_VISIBLE_DEVICES to choose the GPUs"
        )
    count = torch.cuda.device_count()
    if processes > count:
        raise UsageError(
            f"--devices {processes} needs {processes} CUDA GPUs, this machine has {count}; "
            f"use --devices {count} or fewer (or --device cpu for CPU processes)"
        )


def _train(config: TrainConfig) -> TrainResult:
    size = config.image_size or DEFAULT_SIZE.get(config.data.partition(":")[0], 224)
    config = replace(config, image_size=size)
    out = _check_folder(config)
    device = choose_device(config.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    world = join(device.type)
    try:
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        seed_everything(config.seed)
        if config.download and not world.main:
            barrier(world)  # rank 0 downloads first
        data = load_training_data(
            config.data,
            config.val,
            config.val_split,
            config.seed,
            image_size=size,
            labels=config.labels,
            download=config.download and world.main,
        )
        if config.download and world.main:
            barrier(world)
        return _train_on(config, out, data, device, world)
    finally:
        leave(world)


def _build(config: TrainConfig, data: TrainingData) -> tuple[Any, dict[str, Any], tuple, tuple]:
    from .pretrained import load_matching, timm_cache_file

    size = int(config.image_size or 0)
    timm_file = None
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if config.pretrained == "timm":
        timm_file = timm_cache_file(config.arch)
    torch.manual_seed(config.seed)  # the same initial weights in every process and every run
    built = build_classifier(
        config.arch,
        len(data.classes),
        size,
        stem=config.stem,
        options=config.arch_options,
        timm_weights_file=timm_file,
    )
    facts: dict[str, Any] = {"notes": built.notes}
    if timm_file is not None:
        cfg = getattr(built.model, "pretrained_cfg", {}) or {}
        mean = tuple(cfg.get("mean", mean))
        std = tuple(cfg.get("std", std))
        from ..models.fingerprint import file_digest

        facts["pretrained"] = {
            "source": "timm cache",
            "file": timm_file,
            "sha256": file_digest(timm_file),
        }
    elif config.pretrained is not None:
        facts["pretrained"] = load_matching(built.model, config.pretrained)
    return built, facts, mean, std


def _check_same_start(out: Path, facts: dict[str, Any]) -> None:
    """Refuse a resume whose ``--pretrained`` weights are not those the run started from (the
    file replaced since): ``config.json`` would describe weights the run never saw."""
    stored = _stored(out).get("model") or {}
    was = (stored.get("pretrained") or {}).get("sha256")
    now = (facts.get("pretrained") or {}).get("sha256")
    if was is not None and now != was:
        source = (facts.get("pretrained") or {}).get("source")
        raise UsageError(
            f"cannot resume {str(out)!r}: the pretrained weights {source!r} are not those the run "
            f"started from (stored {was}, now {now}); restore them, or start a new run in "
            "another --out"
        )


def _train_on(
    config: TrainConfig, out: Path, data: TrainingData, device: torch.device, world: World
) -> TrainResult:
    size = int(config.image_size or 0)
    built, facts, mean, std = _build(config, data)
    check = map_check(built.model, size)
    cam_layer = {
        "layer": check.layer,
        "map_size": list(check.size),
        "usable": [[n, list(hw)] for n, hw in check.usable],
    }
    if not check.ok and world.main:
        log.warning("%s", check.message(size))
    state = (
        load_checkpoint(out / CHECKPOINT) if config.resume and (out / CHECKPOINT).exists() else None
    )
    progress = TrainingState(**state["progress"]) if state is not None else TrainingState()
    if state is not None:
        check_best(out, progress)
        _check_same_start(out, facts)
        built.model.load_state_dict(state["model"])
    if world.main:
        from .result import write_config

        write_config(
            out,
            {
                MARKER: FORMAT_VERSION,
                "arch": built.arch,
                "stem": built.stem,
                "arch_options": dict(config.arch_options),
                "classes": list(data.classes),
                "num_classes": len(data.classes),
                "image_size": size,
                "mean": list(mean),
                "std": list(std),
                "interpolation": "bilinear",
                "seed": config.seed,
                "cam_layer": cam_layer,
                "model": facts,
                "data": data.summary(),
                "distributed": {"world_size": world.size},
                "training": config.stored(),  # no out, absolute paths: resumable anywhere
            },
        )
    run = Run(config, out, data, built.model, device, world, tuple(mean), tuple(std), cam_layer)
    return run_epochs(run, progress, state)

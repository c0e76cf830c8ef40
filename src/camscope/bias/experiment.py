"""The Grad-CAM paper's bias experiment, offline: train on a planted shortcut, audit, rebalance.

Selvaraju et al. (Grad-CAM, ICCV 2017, Sec. 6.3) trained a doctor/nurse classifier on images where
gender went with the class, saw with Grad-CAM that it looked at faces and hair, rebalanced the
training set, and the retrained model looked at the clothes and generalised better. Here the data
are :class:`camscope.data.biased.BiasedBenchmark` images (a built-in object plus a coloured corner
patch, the *cue*) and every step goes through the library:

1. three splits are written (:func:`camscope.data.biased.write_split`): ``train-biased`` (the cue
   of the image's own class with probability ``bias``), ``train-balanced`` (**the same images**,
   same objects, backgrounds and positions, with the cue drawn independently of the class: the
   rebalanced set) and ``test`` (other images, cue and class independent, with object boxes and
   masks);
2. the same architecture is trained on each training split with :func:`camscope.training.train`
   (same seed, so the same initial weights; no augmentation, because a horizontal flip would move
   the cue to the other corner);
3. both run folders are loaded as models and audited on ``test``
   (:func:`camscope.audit.run.run_audit`), into ``audit-biased/`` and ``audit-balanced/``;
4. ``bias.json`` compares them: validation accuracy (measured on the model's own training
   distribution), test accuracy, *cue agreement* (the share of test images predicted as the class
   whose cue they carry; chance is ``1/K``), the mean ``object_energy`` over classes, the flagged
   classes, and the classes whose flagged hot spot lies on their own cue (the cue's centre inside
   the hot-spot box); ``bias_grid.png`` shows both models' mean maps and maps of test images whose
   cue belongs to another class (:mod:`.bias_figures`).

What it shows and does not show is discussed in ``docs/bias.md``: one seed, one architecture,
a cue we planted ourselves, so it proves the audit finds *this* kind of shortcut, not every kind.

Example:
    >>> result = run_bias_experiment(BiasExperiment(out="out/bias"))  # doctest: +SKIP
    >>> result["models"]["biased"]["test_accuracy"], result["models"]["balanced"]["test_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..audit.run import AuditConfig, AuditRun, run_audit
from ..data.biased import BiasedBenchmark, write_split
from ..errors import UsageError
from ..models import ModelSpec
from ..outputs import finite, output_lock, write_json

log = logging.getLogger(__name__)

MODELS = ("biased", "balanced")
TEST_SEED_OFFSET = 1000  # the test split's generator seed: no image in common with training
_PER_CLASS = ("accuracy", "object_energy", "hotspot_box", "hotspot_hits", "flags")  # of audit.json


@dataclass(frozen=True)
class BiasExperiment:
    """The experiment's settings (``camscope bias-experiment`` builds one from its options).

    Attributes:
        out: the output folder (``data/``, ``runs/``, ``audit-*/``, ``bias.json``, ``bias_grid.png``).
        bias: probability that a biased training image carries its own class's cue.
        train_images, test_images: images per split (classes balanced).
        size: image side in pixels (training and test).
        cue_size: the cue's side as a fraction of the image side.
        arch, width, depth: the architecture (``gapnet-pooled`` by default: seed 004's net with
            2x2 max-pools, which sees whole objects at 32 px) and its GapNet options.
        epochs, batch_size, lr: training (AdamW, warm-up then cosine, as ``camscope train``).
        seed: data, initial weights and shuffling; the test split uses ``seed + 1000``.
        method: the CAM method of the audit.
        device: ``cpu`` (default: the numbers in docs/bias.md are CPU numbers), ``cuda``, ``auto``.
        resume: continue interrupted training runs (finished ones are not retrained).
        progress: progress bars on stderr.
    """

    out: str = "out/bias"
    bias: float = 1.0
    train_images: int = 600
    test_images: int = 200
    size: int = 32
    cue_size: float = 0.25
    arch: str = "gapnet-pooled"
    width: int = 32
    depth: int = 2
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    method: str = "gradcam"
    device: str = "cpu"
    resume: bool = False
    progress: bool = False

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the first bad setting."""
        if not 0.0 <= self.bias <= 1.0:
            raise UsageError(f"bias must be a probability in [0, 1]; got {self.bias}")
        if self.train_images < 40 or self.test_images < 20:
            raise UsageError(
                "the experiment needs at least 40 training and 20 test images "
                f"(got {self.train_images} and {self.test_images})"
            )
        if self.size < 32:
            raise UsageError(f"size must be at least 32 px; got {self.size}")
        if not 0.02 <= self.cue_size <= 0.3:
            raise UsageError(
                f"cue size must be between 0.02 and 0.3 of the side; got {self.cue_size}"
            )
        for name in ("width", "depth", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1; got {getattr(self, name)}")


def _bench(config: BiasExperiment, length: int, seed: int, bias: float | None) -> BiasedBenchmark:
    return BiasedBenchmark(length, size=config.size, seed=seed, bias=bias, cue_size=config.cue_size)


def write_data(config: BiasExperiment) -> dict[str, Path]:
    """Write the three splits under ``out/data`` and return their folders by name."""
    root = Path(config.out) / "data"
    splits = {
        "train-biased": (_bench(config, config.train_images, config.seed, config.bias), "folders"),
        "train-balanced": (_bench(config, config.train_images, config.seed, None), "folders"),
        "test": (held_out_bench(config), "boxes"),
    }
    return {name: write_split(split, root / name, how) for name, (split, how) in splits.items()}


def held_out_bench(config: BiasExperiment) -> BiasedBenchmark:
    """The test split's generator (its ``cue_of`` and ``cue_box`` give each image's cue)."""
    return _bench(config, config.test_images, config.seed + TEST_SEED_OFFSET, None)


def train_model(config: BiasExperiment, data: Path, run_dir: Path) -> dict[str, Any]:
    """Train on ``data`` into ``run_dir`` with :func:`camscope.training.train`; its key numbers."""
    from ..training import TrainConfig, train
    from ..training.result import read_result

    started = (run_dir / "config.json").exists()
    if started and not config.resume:
        raise UsageError(
            f"{run_dir} already holds a training run; pass --resume to continue (finished runs are "
            "reused) or choose another --out"
        )
    wanted = TrainConfig(
        data=str(data),
        out=str(run_dir),
        arch=config.arch,
        arch_options={"width": config.width, "depth": config.depth},
        image_size=config.size,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        augment="none",
        seed=config.seed,
        device=config.device,
        resume=started,
        progress=config.progress,
    )
    if _finished_as_wanted(run_dir, wanted):
        log.info("reusing the finished run in %s", run_dir)
        result = read_result(run_dir)
    else:  # a new run, or an interrupted one (train refuses a resume with other settings)
        result = train(wanted)
    return {
        "run": str(run_dir),
        "status": result.status,
        "epochs": result.epochs_done,
        "best_epoch": result.best_epoch,
        "val_accuracy": round(result.best_val_acc, 4),
        # the epochs' own seconds (metrics.csv), so a reused run reports its training time
        "train_seconds": round(sum(float(row.get("seconds", 0.0)) for row in result.history), 1),
    }


def _finished_as_wanted(run_dir: Path, wanted: Any) -> bool:
    """True when ``run_dir`` holds a finished run with the settings (and epochs) of ``wanted``."""
    from ..training.result import read_result

    if not (run_dir / "summary.json").exists() or not (run_dir / "config.json").exists():
        return False
    stored = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("training", {})
    done = read_result(run_dir)
    return (
        done.status != "paused"
        and done.epochs_done >= done.epochs_planned
        and stored.get("epochs") == wanted.epochs
        and not wanted.differences(stored)
    )


def audit_model(
    config: BiasExperiment, run_dir: Path, test: Path, out: Path
) -> tuple[AuditRun, nn.Module, ModelSpec]:
    """Audit the run folder's best model on the test split, write ``out`` (audit.json...)."""
    from ..audit.report import write_audit
    from ..data.read import read_data
    from ..models import load_model

    model, spec = load_model(str(run_dir))
    data = read_data(str(test), spec.class_names)
    audit = AuditConfig(method=config.method, examples=4)
    run = run_audit(model, spec, data, audit, progress=config.progress)
    settings = {
        "model": str(run_dir),
        "data": str(test),
        "method": config.method,
        "layer": run.layer,
    }
    write_audit(run, out, settings, title=f"camscope audit: {run_dir.name} model on the test split")
    return run, model, spec


def on_cue(run: AuditRun, bench: BiasedBenchmark) -> list[str]:
    """Classes with a hot-spot flag whose hot-spot box holds the centre of the class's own cue."""
    found = []
    for k, name in enumerate(bench.names):
        summary = run.classes.get(name)
        if summary is None or summary.hotspot is None:
            continue
        if not any(f.startswith("the maps peak in the") for f in summary.flags):
            continue
        x0, y0, x1, y1 = bench.cue_box(k)
        cx, cy = (x0 + x1) / 2 / bench.size, (y0 + y1) / 2 / bench.size
        bx0, by0, bx1, by1 = summary.hotspot.box
        if bx0 <= cx <= bx1 and by0 <= cy <= by1:
            found.append(name)
    return found


def compare(run: AuditRun, bench: BiasedBenchmark, spec: ModelSpec) -> dict[str, Any]:
    """The audit's numbers that the experiment compares (see the module docstring)."""
    # write_split names image i "<seed>-<i:06d>.png"; the reader's ids keep that stem
    cue_class = {f"{bench.seed}-{i:06d}": bench.names[bench.cue_of(i)] for i in range(len(bench))}
    agree = [
        spec.label(r.predicted) == cue_class[Path(r.id).stem]
        for r in run.records
        if Path(r.id).stem in cue_class
    ]
    energies = [c.object_energy for c in run.classes.values() if c.object_energy is not None]
    return {
        "test_accuracy": round(float(np.mean([r.correct for r in run.records])), 4),
        "cue_agreement": round(float(np.mean(agree)), 4) if agree else None,
        "object_energy": round(float(np.mean(energies)), 4) if energies else None,
        "per_class": {
            name: {key: value for key, value in c.to_json().items() if key in _PER_CLASS}
            for name, c in run.classes.items()
        },
        "flagged": run.flagged,
        "hotspot_on_cue": on_cue(run, bench),
        "failed": len(run.failed),
    }


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} CPUs visible, torch {torch.__version__} with {threads} threads"


def run_bias_experiment(config: BiasExperiment) -> dict[str, Any]:
    """Run the whole experiment (see the module docstring); returns what ``bias.json`` holds.
    The output folder is locked for the run."""
    from .figures import write_grid

    config.validate()
    with output_lock(config.out, "camscope bias-experiment") as out:
        for name in MODELS:  # before the data are rewritten
            if (out / "runs" / name / "config.json").exists() and not config.resume:
                raise UsageError(
                    f"{out} already holds the experiment's training runs; pass --resume to "
                    "continue (finished runs are reused) or choose another --out"
                )
        tic = time.perf_counter()
        paths = write_data(config)
        bench = held_out_bench(config)
        models: dict[str, Any] = {}
        runs: dict[str, AuditRun] = {}
        loaded: dict[str, tuple[nn.Module, ModelSpec]] = {}
        for name in MODELS:
            run_dir = out / "runs" / name
            log.info("training the %s model into %s", name, run_dir)
            trained = train_model(config, paths[f"train-{name}"], run_dir)
            log.info("auditing the %s model on %s", name, paths["test"])
            run, model, spec = audit_model(config, run_dir, paths["test"], out / f"audit-{name}")
            runs[name], loaded[name] = run, (model, spec)
            models[name] = {**trained, **compare(run, bench, spec), "audit": f"audit-{name}"}
        biased, balanced = models["biased"], models["balanced"]
        result: dict[str, Any] = {
            "settings": asdict(config),
            "machine": machine(),
            "seconds": round(time.perf_counter() - tic, 1),
            "chance": round(1 / len(bench.names), 4),
            "models": models,
            "gaps": {
                "test_accuracy": _gap(balanced["test_accuracy"], biased["test_accuracy"]),
                "object_energy": _gap(balanced["object_energy"], biased["object_energy"]),
                "cue_agreement": _gap(biased["cue_agreement"], balanced["cue_agreement"]),
            },
        }
        write_grid(runs, loaded, bench, out / "bias_grid.png", config.method)
        result["grid"] = "bias_grid.png"
        write_json(out / "bias.json", result)
        return result


def _gap(a: float | None, b: float | None) -> float | None:
    """``a - b`` to 4 decimals; None when either is undefined (None or NaN)."""
    return None if a is None or b is None else finite(a - b, 4)

"""What a training run does: :class:`TrainConfig`, checked once, stored in the run's ``config.json``.

Every field is a plain value (no argparse namespace reaches the library); ``--resume`` compares the
stored fields that change results with the new ones and refuses a resume that differs.

A run folder resumes from wherever it is now: ``out`` is where the run is, not a setting, so it is
neither stored nor compared (an absolute path, another working directory, a moved or copied run
all continue), and the paths among the settings (``data``, ``val``, ``pretrained``) are stored
absolute (:meth:`TrainConfig.stored`) and compared by the place they name, not by their spelling.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..models.run_folder import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

OPTIMIZERS = ("adamw", "sgd")
AUGMENTATIONS = ("auto", "crop", "pad-crop", "none")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
MONITORS = ("val_acc", "val_loss")

# Settings that name files or folders: stored absolute, compared by the place they name.
PATHS = ("data", "val", "pretrained")

# Fields that may change on --resume: they do not change what an epoch computes.
RESUMABLE = frozenset(
    {
        "epochs",
        "stop_after",
        "resume",
        "workers",
        "progress",
        "explain",
        "devices",
        "download",
        "patience",
    }
)


@dataclass
class TrainConfig:
    """A training run (``camscope train`` builds one from its options).

    Data:
        data: a class-folder path, ``cifar10:DIR``, ``cifar100:DIR`` or ``builtin:N[:SEED]``.
        val: a class-folder path with the same classes, ``"test"`` (CIFAR's test batch) or None
            (a seeded, stratified ``val_split`` of ``data``).
        val_split: share of each class held out for validation.
        labels: ``"fine"`` or ``"coarse"`` (CIFAR-100's 20 superclasses).
        download: let torchvision fetch CIFAR into ``DIR`` when it is missing (needs a network).

    Model:
        arch: architecture name (:mod:`camscope.models.architectures`).
        image_size: square input side in pixels, 8 to 2048 (default: 32 for CIFAR, 64 for
            builtin, else 224).
        stem: ``"auto"``, ``"cifar"`` or ``"imagenet"``.
        arch_options: GapNet options (``width``, ``depth``...) or timm/torchvision keyword arguments.
        pretrained: None (random initialisation), ``"timm"`` (timm's local cache, never a download),
            a checkpoint file or a run folder.

    Optimisation:
        epochs, batch_size, optimizer (``adamw`` | ``sgd``), lr (default 1e-3 for AdamW, 0.05 for
        SGD), weight_decay (default 0.05 for AdamW, 5e-4 for SGD), momentum, nesterov,
        warmup_epochs (linear warm-up, then cosine decay to ``min_lr``), label_smoothing,
        clip_grad (max gradient norm, None = off), augment (``auto`` = ``pad-crop`` at 64 px or
        less, else ``crop`` = random-resized crop; both with a horizontal flip), precision
        (``auto`` = fp16 autocast on CUDA, fp32 on CPU; ``bf16`` autocast works on both),
        channels_last (None = on for CUDA), patience (early stopping after this many epochs
        without a better ``monitor``; None = off), seed, deterministic (torch's deterministic
        algorithms).

    Run:
        out: the run folder. resume: continue from ``out/last.ckpt``. stop_after: stop after this
        many epochs in this session (the schedule still spans ``epochs``; ``--resume``
        continues). device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. devices: processes for
        data-parallel training (torch DDP; under ``torchrun`` its world size wins). workers:
        DataLoader worker processes. explain: grids for this many validation images at the end.
        progress: a progress bar on stderr.
    """

    data: str
    out: str
    arch: str = "resnet18"
    val: str | None = None
    val_split: float = 0.1
    labels: str = "fine"
    download: bool = False
    image_size: int | None = None
    stem: str = "auto"
    arch_options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    augment: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    patience: int | None = None
    monitor: str = "val_acc"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    devices: int = 1
    workers: int = 0
    resume: bool = False
    stop_after: int | None = None
    explain: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the first bad value."""
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.augment in AUGMENTATIONS, f"augment must be one of {AUGMENTATIONS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.monitor in MONITORS, f"monitor must be one of {MONITORS}"),
            (self.labels in ("fine", "coarse"), "labels must be 'fine' or 'coarse'"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (0.0 < self.val_split < 1.0 or self.val is not None, "val split must be in (0, 1)"),
            (
                self.image_size is None or MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
                f"image size must be from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px",
            ),
            (self.lr is None or _positive(self.lr), "lr must be a positive number"),
            (
                self.weight_decay is None
                or (_finite(self.weight_decay) and self.weight_decay >= 0),
                "weight decay must be >= 0",
            ),
            (0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)"),
            (_finite(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup must be >= 0"),
            (_finite(self.min_lr) and self.min_lr >= 0, "min lr must be >= 0"),
            (0.0 <= self.label_smoothing < 1.0, "label smoothing must be in [0, 1)"),
            (self.clip_grad is None or _positive(self.clip_grad), "clip grad must be > 0"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1"),
            (self.devices >= 1, "devices must be >= 1"),
            (self.workers >= 0, "workers must be >= 0"),
            (self.stop_after is None or self.stop_after >= 1, "stop after must be >= 1"),
            (self.explain >= 0, "explain must be >= 0"),
            (
                re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
                "device must be auto, cpu, cuda or cuda:N",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"training option: {message}")

    @property
    def default_lr(self) -> float:
        """The learning rate used when none is given: 1e-3 for AdamW, 0.05 for SGD."""
        return 1e-3 if self.optimizer == "adamw" else 0.05

    @property
    def decay(self) -> float:
        """The weight decay: as given, else 0.05 for AdamW and 5e-4 for SGD."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.05 if self.optimizer == "adamw" else 5e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def stored(self) -> dict[str, Any]:
        """The settings as ``config.json`` keeps them: without ``out`` (the run is its folder,
        wherever that is) and with ``data``, ``val`` and ``pretrained`` absolute (a resume from
        another working directory finds the same data)."""
        settings = self.to_dict()
        settings.pop("out")
        for key in PATHS:
            settings[key] = located(key, settings[key])
        return settings

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """Names of the fields that change results and differ from a stored run's (``out`` is
        never compared; paths are compared by the place they name)."""
        mine = self.to_dict()
        return sorted(
            k
            for k in mine
            if k not in RESUMABLE
            and k != "out"
            and k in stored
            and not _same(k, stored[k], mine[k])
        )

    def check_resume(self, stored: dict[str, Any], run: str | Path) -> None:
        """Raise :class:`UsageError` when the run in ``run`` (settings ``stored``) cannot resume
        with these settings, naming each field that differs (:meth:`differences`)."""
        differ = self.differences(stored)
        if not differ:
            return
        mine = self.to_dict()
        listed = "; ".join(f"{k} (stored {stored[k]!r}, now {mine[k]!r})" for k in differ)
        flags = ", ".join(sorted(k.replace("_", "-") for k in RESUMABLE if k != "resume"))
        what = "this setting differs" if len(differ) == 1 else "these settings differ"
        raise UsageError(
            f"cannot resume {str(run)!r}: {what} from the stored run's: {listed}. A resume may "
            f"change only {flags}; leave the others out (the stored values are used) or start a "
            "new run in another --out"
        )


def located(key: str, value: Any) -> Any:
    """Setting ``key``'s ``value`` with the file or folder it names made absolute: a data spec's
    path through the one data grammar (``cifar10:data`` -> ``cifar10:/abs/data``, ``builtin:24``
    kept; :func:`camscope.data.spec.parse_data`), a ``val`` or ``pretrained`` path as a whole.
    Words (``val="test"``, ``pretrained="timm"``), None and paths that do not exist are kept.

    >>> located("data", "builtin:24"), located("val", "test"), located("val", None)
    ('builtin:24', 'test', None)
    """
    if not isinstance(value, str) or not value or value == _WORDS.get(key):
        return value
    if key == "data":
        from ..data.spec import parse_data
        from ..errors import CamscopeError

        try:
            spec = parse_data(value)
        except CamscopeError:  # said when the data is read
            return value
        if spec.path is None:
            return value
        where = str(spec.path.resolve())
        return f"{spec.kind}:{where}" if value.startswith(f"{spec.kind}:") else where
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


_WORDS = {"val": "test", "pretrained": "timm"}  # values that are not paths


def _same(key: str, stored: Any, mine: Any) -> bool:
    if stored == mine:
        return True
    return key in PATHS and located(key, stored) == located(key, mine)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _positive(value: float) -> bool:
    return _finite(value) and value > 0

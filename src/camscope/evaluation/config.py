"""What an evaluation run measures: :class:`EvalConfig` (the columns are in
:mod:`camscope.evaluation.registry`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..metrics import faithfulness as fm
from ..metrics import localization as lm
from .registry import check_families, default_families

if TYPE_CHECKING:
    from ..data.dataset import LabelledData
    from ..models import ModelSpec


@dataclass
class EvalConfig:
    """What to evaluate and how (stored in ``config.json``; ``--resume`` requires the same).

    Attributes:
        methods: registered method names.
        layers: explained layers; each is evaluated separately (``["auto"]``: the automatic one).
        metrics: metric families (:func:`camscope.evaluation.registry.family_names`).
        batch_size: images per explain call; forward passes of the metrics use ``forward_batch``.
        threshold: WSOL threshold (fraction of the map maximum).
        tolerance: pointing-game tolerance in pixels (at the model's input resolution).
        reject_threshold: top-5 pointing reject option (relative raw peak).
        steps: deletion/insertion steps; deletion_substrate / insertion_substrate: see
            :func:`camscope.metrics.faithfulness.substrate`.
        road_fractions: ROAD removal fractions.
        occlusion_patch / occlusion_stride: occlusion grid.
        sanity_images: images used for the (model-level) randomization test.
        robustness_samples / robustness_radius: noisy copies per image and their uniform noise
            radius on the [0, 1] pixel scale (:mod:`camscope.metrics.robustness`).
        data: the data (absolute path, or ``builtin (seed S)``).
        model: the model's name.
        weights: the weights file and its SHA-256 (``""``: the model's own weights).
        weights_digest: the digest of the evaluated model's tensors, whatever they were loaded
            from (a run folder, a weights file, a model file; set by
            :func:`camscope.evaluation.run_evaluation` from the model:
            :func:`camscope.models.fingerprint.weights_digest`).
        random_init: the model was not given pretrained weights.
        model_input: what the input pipeline does (input size, mean, std, interpolation, classes).
        labels: how data-set labels became model classes (class-map file and hash, unmapped rule).
        images: ``--images`` folder; allow_outside_paths: ``--allow-outside-paths``.
        method_options: ``method_options`` of every :func:`camscope.explain` call.
        multilabel: the classes are independent sigmoids (a multi-label head): probabilities,
            drops and curves read ``sigmoid(logit)`` per class (:mod:`camscope.core.prediction`).

    Everything here changes the rows a run writes, so ``--resume`` refuses a run whose stored
    config differs in any field (:func:`config_differences`).
    """

    methods: list[str]
    layers: list[str] = field(default_factory=lambda: ["auto"])
    metrics: list[str] = field(default_factory=default_families)
    batch_size: int = 8
    forward_batch: int = 64
    threshold: float = lm.DEFAULT_THRESHOLD
    tolerance: float = lm.DEFAULT_TOLERANCE
    reject_threshold: float = 0.5
    steps: int = 20
    deletion_substrate: str = "zero"
    insertion_substrate: str = "blur"
    road_fractions: list[float] = field(default_factory=lambda: list(fm.ROAD_FRACTIONS))
    occlusion_patch: int = 56
    occlusion_stride: int = 28
    sanity_images: int = 8
    robustness_samples: int = 8
    robustness_radius: float = 0.02
    data: str = ""
    model: str = ""
    weights: str = ""
    weights_digest: str = ""
    random_init: bool = False
    model_input: dict[str, Any] = field(default_factory=dict)
    labels: str = ""
    images: str = ""
    allow_outside_paths: bool = False
    method_options: dict[str, Any] = field(default_factory=dict)
    multilabel: bool = False

    def describe(
        self,
        spec: ModelSpec,
        data: LabelledData,
        data_text: str,
        *,
        weights: str | Path | None = None,
        class_map: str | Path | None = None,
        unmapped: str = "error",
        images: str | Path | None = None,
    ) -> list[str]:
        """Record what the run reads (``config.json``: the model and its input pipeline, the
        weights file and its hash, the data, how its labels became classes, the images folder);
        returns the report's notes on the data. ``data_text`` is the data as the user gave it."""
        self.model = spec.name
        kept = ("input_size", "mean", "std", "interpolation", "num_classes", "channels")
        self.model_input = {k: v for k, v in spec.to_dict().items() if k in kept}
        self.weights = _fingerprint(weights) if weights is not None else ""
        self.images = str(Path(images).expanduser().resolve()) if images else ""
        if data.kind == "builtin":
            # The built-in benchmark's image i does not depend on N: a resumed run may grow N.
            self.data, self.labels = f"builtin (seed {data.details['generator_seed']})", ""
            return []
        self.data = str(Path(data_text).expanduser().resolve())
        self.labels = f"unmapped {unmapped}"
        if class_map:
            self.labels = f"class map {_fingerprint(class_map)}; {self.labels}"
        return [f"data: {data.description}", *data.notes]

    def report_notes(self, data_text: str) -> list[str]:
        """The report's lines on the model, the data as given and the protocols' settings."""
        builtin = self.data[len("builtin") :] if self.data.startswith("builtin") else ""
        return [
            f"Model {self.model}"
            + (f" ({self.weights})" if self.weights else "")
            + ("; random init" if self.random_init else "")
            + f"; data {data_text}{builtin}; layers {', '.join(self.layers)}; "
            f"metrics {', '.join(self.metrics)}.",
            f"WSOL threshold {self.threshold:g} of the max, largest 8-connected segment; "
            f"pointing tolerance {self.tolerance:g} px; deletion/insertion {self.steps} steps, "
            f"substrates {self.deletion_substrate}/{self.insertion_substrate}, pixels ranked by "
            "decreasing map value (ties in raster order).",
        ]

    def validate(self) -> None:
        """Refuse settings that cannot give meaningful numbers (NaN, out of range, empty)."""
        if self.metrics:  # none at all: rows with the prediction only
            check_families(self.metrics)
        if not self.methods:
            raise UsageError("no method to evaluate")
        for sub in (self.deletion_substrate, self.insertion_substrate):
            if sub not in fm.SUBSTRATES:
                raise UsageError(
                    f"unknown substrate {sub!r}; choose from {', '.join(fm.SUBSTRATES)}"
                )
        counts = ("steps", "batch_size", "forward_batch", "occlusion_patch", "occlusion_stride")
        for name in (*counts, "sanity_images", "robustness_samples"):
            if int(getattr(self, name)) < 1:
                option = " (--robustness-samples)" if name == "robustness_samples" else ""
                raise UsageError(f"{name}{option} must be >= 1; got {getattr(self, name)}")
        _check_range("robustness_radius (--robustness-radius)", self.robustness_radius, 0.0, 1.0)
        _check_range("threshold (--threshold)", self.threshold, 0.0, 1.0)
        _check_range("tolerance (--tolerance, pixels)", self.tolerance, 0.0, math.inf)
        _check_range("reject_threshold", self.reject_threshold, 0.0, 1.0)
        if not self.road_fractions:
            raise UsageError("road_fractions must not be empty")
        for fraction in self.road_fractions:
            _check_range("a ROAD fraction", fraction, 0.0, 1.0)


def _fingerprint(path: str | Path) -> str:
    """``/abs/path (sha256 0123456789abcdef)``: what a file is, not only where it is."""
    from ..models.fingerprint import PREFIX, file_digest

    file = Path(path).expanduser()
    try:
        digest = file_digest(file).removeprefix(PREFIX)
    except OSError as err:
        raise UsageError(f"cannot read {str(file)!r}: {err.strerror or err}") from None
    return f"{file.resolve()} (sha256 {digest[:16]})"


def _check_range(name: str, value: float, low: float, high: float) -> None:
    """A finite number in [low, high] (NaN and infinities are refused: they make runs
    unresumable and every comparison false)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        bounds = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise UsageError(f"{name} must be a finite number {bounds}; got {value!r}")


#: Settings added after runs were stored: a stored config without them had their default.
_LATER_DEFAULTS: dict[str, Any] = {"multilabel": False}


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"name (stored X, now Y)"`` for every setting that differs between two configs."""
    out = []
    stored = {**_LATER_DEFAULTS, **stored}
    for key in sorted(set(stored) | set(current)):
        was, now = stored.get(key, "<not recorded>"), current.get(key, "<not recorded>")
        if was != now:
            out.append(f"{key} (stored {was!r:.80}, now {now!r:.80})")
    return out

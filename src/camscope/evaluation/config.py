"""What an evaluation run measures: the leaderboard columns and :class:`EvalConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..metrics import DEFAULT_METRICS, FAMILIES
from ..metrics import faithfulness as fm
from ..metrics import localization as lm


@dataclass(frozen=True)
class MetricInfo:
    """A leaderboard column: its key, title, unit, better direction and family."""

    key: str
    title: str
    higher_is_better: bool
    family: str
    percent: bool = False


#: Every column the evaluation can produce, in leaderboard order.
COLUMNS: tuple[MetricInfo, ...] = (
    MetricInfo("loc_error_top1", "Top-1 loc. error %", False, "loc", True),
    MetricInfo("loc_error_top5", "Top-5 loc. error %", False, "loc", True),
    MetricInfo("gt_known_loc", "GT-known loc. %", True, "loc", True),
    MetricInfo("iou", "IoU", True, "loc"),
    MetricInfo("pointing", "Pointing %", True, "pointing", True),
    MetricInfo("pointing_top5", "Top-5 pointing (reject) %", True, "pointing", True),
    MetricInfo("energy", "Energy pointing %", True, "energy", True),
    MetricInfo("disc_pointing", "Discrimination pointing %", True, "discrimination", True),
    MetricInfo("disc_energy", "Discrimination energy %", True, "discrimination", True),
    MetricInfo("avg_drop", "Average Drop %", False, "drop"),
    MetricInfo("increase", "Increase in Confidence %", True, "drop", True),
    MetricInfo("win", "Win %", True, "drop", True),
    MetricInfo("deletion", "Deletion AUC", False, "deletion"),
    MetricInfo("insertion", "Insertion AUC", True, "insertion"),
    MetricInfo("road_morf", "ROAD MoRF", False, "road"),
    MetricInfo("road_lerf", "ROAD LeRF", True, "road"),
    MetricInfo("occlusion_rho", "Occlusion Spearman", True, "occlusion"),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}


@dataclass
class EvalConfig:
    """What to evaluate and how (stored in ``config.json``; ``--resume`` requires the same).

    Attributes:
        methods: registered method names.
        layers: explained layers; each is evaluated separately (``["auto"]``: the automatic one).
        metrics: metric families (:data:`FAMILIES`).
        batch_size: images per explain call; forward passes of the metrics use ``forward_batch``.
        threshold: WSOL threshold (fraction of the map maximum).
        tolerance: pointing-game tolerance in pixels (at the model's input resolution).
        reject_threshold: top-5 pointing reject option (relative raw peak).
        steps: deletion/insertion steps; deletion_substrate / insertion_substrate: see
            :func:`camscope.metrics.faithfulness.substrate`.
        road_fractions: ROAD removal fractions.
        occlusion_patch / occlusion_stride: occlusion grid.
        sanity_images: images used for the (model-level) randomization test.
        data: a description of the data (for the report).
        method_options: ``method_options`` of every :func:`camscope.explain` call.
    """

    methods: list[str]
    layers: list[str] = field(default_factory=lambda: ["auto"])
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
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
    data: str = ""
    model: str = ""
    method_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        unknown = [m for m in self.metrics if m not in FAMILIES]
        if unknown:
            raise UsageError(f"unknown metric(s) {unknown}; choose from {', '.join(FAMILIES)}")
        if not self.methods:
            raise UsageError("no method to evaluate")
        for sub in (self.deletion_substrate, self.insertion_substrate):
            if sub not in fm.SUBSTRATES:
                raise UsageError(
                    f"unknown substrate {sub!r}; choose from {', '.join(fm.SUBSTRATES)}"
                )
        if self.steps < 1 or self.batch_size < 1 or self.forward_batch < 1:
            raise UsageError("steps, batch size and forward batch must be >= 1")

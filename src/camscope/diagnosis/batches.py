"""What a ``failures`` or ``adversarial`` run shares: its settings, output folder, device and walk.

Both commands walk :class:`~camscope.data.dataset.LabelledData` with the batch walker
(:class:`camscope.data.walk.Walk`): a batch of samples at a time, each decoded and preprocessed
(:meth:`Sample.prepare <camscope.data.dataset.Sample.prepare>`), a sample that cannot be used (an
error set when read, a label of no model class where one is needed, a bad file) told to
``on_skip`` and recorded, the others go on, with the progress bar on stderr.

Example:
    >>> run = DiagnosisRun(model, "out/failures", FailureSettings())  # doctest: +SKIP
    >>> for batch in run.batches(data.items, spec):  # doctest: +SKIP
    ...     images = torch.cat([p.x for _, p in batch.ok]).to(run.device)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.dataset import LoadOptions, Prepared, Sample
from ..data.progress import Progress
from ..data.walk import SkipFn, Walk

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..models import ModelSpec


@dataclass
class DiagnosisSettings:
    """The settings ``failures`` and ``adversarial`` share (plain values, no argparse).

    Attributes:
        layer: the layer(s) the maps are taken at (``"auto"``: the engine's choice).
        batch_size: images per pass.
        colormap, alpha: the heat-map overlays of the pictures.
        max_pixels: refuse larger images (default: the library's limit).
        method_options: options of the map methods.
        multilabel: the classes are independent sigmoids (a multi-label head), not a softmax
            (:mod:`camscope.core.prediction`).
        progress: a progress bar on stderr (True, or a :class:`Progress`; lines when stderr is
            not a terminal).
        on_skip: told about every input that cannot be used (default: a warning).
    """

    layer: str | list[str] = "auto"
    batch_size: int = 8
    colormap: str = "inferno"
    alpha: float = 0.5
    max_pixels: int | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    multilabel: bool = False
    progress: bool | Progress = True
    on_skip: SkipFn | None = None

    def explain(self, model: nn.Module, x: Tensor, methods: list[str], targets: Tensor) -> Any:
        """:func:`camscope.explain` at the run's layer with its options; strict: every method's
        maps are read, so one that cannot run at the layer is a usage error."""
        from ..core.engine import explain

        return explain(
            model,
            x,
            methods,
            self.layer,
            targets,
            method_options=self.method_options,
            strict=True,
            multilabel=self.multilabel,
        )


class DiagnosisRun:
    """One ``failures`` or ``adversarial`` run: ``out`` (created), ``device`` (the model's),
    :meth:`batches` (the walk) and :meth:`skip`, ``errors`` (every skipped input)."""

    def __init__(self, model: nn.Module, out_dir: str | Path, settings: DiagnosisSettings) -> None:
        from ..models.spec import model_device

        self.settings = settings
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device: torch.device = model_device(model)
        self.walk: Walk[Prepared] | None = None

    def batches(
        self, samples: Sequence[Sample], spec: ModelSpec, *, need_class: bool = False
    ) -> Walk[Prepared]:
        """The walk over ``samples``, decoded for ``spec`` (``need_class``: leave out samples
        whose label names no model class)."""
        s = self.settings
        self.walk = Walk(
            samples,
            spec=spec,
            options=LoadOptions(s.max_pixels),
            batch_size=s.batch_size,
            progress=s.progress,
            on_skip=s.on_skip,
            need_class=need_class,
        )
        return self.walk

    def skip(self, sample: Sample, reason: str) -> None:
        """A sample that failed after decoding (the model failed on it), told as a skip."""
        if self.walk is not None:
            self.walk.skip(sample, reason)

    @property
    def errors(self) -> list[dict[str, str]]:
        skipped = self.walk.skipped if self.walk is not None else []
        return [{"path": s.source, "error": s.reason} for s in skipped]

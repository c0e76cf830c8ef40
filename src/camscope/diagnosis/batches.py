"""Labelled images decoded batch by batch, for ``failures`` and ``adversarial``.

Both commands walk :class:`~camscope.data.labelled.LabelledData` the same way: a batch of
items at a time, each decoded and preprocessed (:meth:`LabelledItem.prepare`), an item that
cannot be used (an error set when read, a label of no model class where one is needed, a bad
file) reported to the caller's ``on_skip`` and recorded, the others go on, with a progress bar
on stderr. :class:`DiagnosisSettings` are the settings both commands have, :class:`DiagnosisRun`
what one such run shares: its output folder, the model's device and the :class:`SkipLog`.

Example:
    >>> run = DiagnosisRun(model, "out/failures", FailureSettings())  # doctest: +SKIP
    >>> for batch in run.batches(data.items, spec):  # doctest: +SKIP
    ...     images = torch.cat([x for _, _, x, _ in batch]).to(run.device)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.labelled import LabelledItem
from ..errors import CamscopeError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..models import ModelSpec

log = logging.getLogger(__name__)

#: ``on_skip(path, reason)``: told about every input that cannot be used (default: a warning).
SkipFn = Callable[[str, str], None]
#: An item with its RGB image, ``(1, 3, H, W)`` model input and object boxes at the input size.
Prepared = tuple[LabelledItem, Any, "Tensor", "Tensor"]


@dataclass
class SkipLog:
    """Records every skipped input (``errors``) and tells ``on_skip`` (default: a warning)."""

    on_skip: SkipFn | None
    errors: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, path: str, error: str) -> None:
        self.errors.append({"path": path, "error": error})
        if self.on_skip is not None:
            self.on_skip(path, error)
        else:
            log.warning("skipped %s: %s", path, error)


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
        progress: a progress bar on stderr (on a terminal only).
        on_skip: told about every input that cannot be used (default: a warning).
    """

    layer: str | list[str] = "auto"
    batch_size: int = 8
    colormap: str = "inferno"
    alpha: float = 0.5
    max_pixels: int | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    multilabel: bool = False
    progress: bool = True
    on_skip: SkipFn | None = None


class DiagnosisRun:
    """One ``failures`` or ``adversarial`` run: ``out`` (created), ``device`` (the model's),
    ``skip`` (a :class:`SkipLog`) and :meth:`batches`."""

    def __init__(self, model: nn.Module, out_dir: str | Path, settings: DiagnosisSettings) -> None:
        import torch

        self.settings = settings
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device: torch.device = next(iter(model.parameters()), torch.zeros(0)).device
        self.skip = SkipLog(settings.on_skip)

    def batches(
        self, items: Sequence[LabelledItem], spec: ModelSpec, *, need_class: bool = False
    ) -> Iterator[list[Prepared]]:
        """:func:`prepared_batches` with this run's settings and skip log."""
        return prepared_batches(items, spec, self.settings, self.skip, need_class=need_class)


def prepared_batches(
    items: Sequence[LabelledItem],
    spec: ModelSpec,
    settings: DiagnosisSettings,
    skip: SkipFn,
    *,
    need_class: bool = False,
) -> Iterator[list[Prepared]]:
    """Yield the usable items of each batch of ``settings.batch_size`` (possibly none), decoded.

    Args:
        settings: the batch size, the pixel limit and the progress bar.
        skip: told ``(source, reason)`` for every item left out.
        need_class: leave out items whose label names no model class.
    """
    batch_size = settings.batch_size
    from tqdm import tqdm

    from .. import io

    limit = settings.max_pixels or io.DEFAULT_MAX_PIXELS
    hide = None if settings.progress else True  # None: a bar on a terminal only
    with tqdm(total=len(items), unit="img", file=sys.stderr, disable=hide, leave=False) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            loaded: list[Prepared] = []
            for item in chunk:
                problem = item.error
                if problem is None and need_class and not item.class_ids:
                    problem = f"label {item.label!r} names no class of the model"
                if problem is None:
                    try:
                        loaded.append((item, *item.prepare(spec, limit)))
                        continue
                    except CamscopeError as err:
                        problem = str(err)
                skip(item.source, problem)
            yield loaded
            bar.update(len(chunk))

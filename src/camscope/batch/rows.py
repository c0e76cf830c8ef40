"""One step of a data-set job: explain a decoded batch and turn the result into shard rows.

:class:`ExplainStep` is shared by the local pipeline and the Ray actors, so both backends produce
the same rows from the same inputs. It makes one :func:`camscope.explain` call per batch (the
passes exactly as ``explain`` does them); when that call fails for a reason that is not the user's
request (a ``RuntimeError``/``ValueError`` that is not a :class:`~camscope.errors.CamscopeError`),
it retries image by image, so one image that breaks the model fails alone.

Rows (:func:`camscope.batch.parquet.map_schema`): one per image, layer, method and target, in that
order, so the rows of one image are contiguous. Weak labels, as in the WSOL evaluation
(:mod:`camscope.metrics.localization`, seed paper 001's protocol): the map at the model input's
resolution is thresholded at 15% of its maximum and the largest 8-connected segment kept; the box
around it is scaled to the image's own pixels (``--save-boxes``), the segment itself is the mask
(``--save-masks``, at the input resolution or ``--map-size``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.walk import naming_warnings
from ..errors import CamscopeError
from ..metrics.localization import DEFAULT_THRESHOLD
from ..outputs import write_picture
from .decode import DecodedBatch
from .parquet import ERROR, POSITION, SOURCE, add_row, step_schema

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import torch
    from torch import nn

    from ..core.result import Explanation
    from ..data.dataset import Sample
    from ..models import ModelSpec
    from ..tasks import TaskRequest
    from .compiled import CompiledTrunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapSettings:
    """What each step computes and stores (picklable: it travels to the Ray actors)."""

    methods: tuple[str, ...]
    layers: tuple[str, ...]
    target: str | int = "top1"
    map_size: tuple[int, int] | None = None
    save_boxes: bool = False
    save_masks: bool = False
    threshold: float = DEFAULT_THRESHOLD
    aug_smooth: bool = False
    eigen_smooth: bool = False
    method_options: dict[str, Any] = field(default_factory=dict)
    mode: str = "eval"
    multilabel: bool = False
    png_dir: str | None = None  # overlays go here (--save-png)
    colormap: str = "inferno"
    alpha: float = 0.5
    task: TaskRequest | None = None  # detection, segmentation, similarity (.task_rows)
    # How the passes run (not what they compute): the forward at reduced precision
    # (camscope.core.precision; the CAM math stays float32) and the trunk before the layer
    # compiled (camscope.batch.compiled). Here, so that every Ray actor runs them alike.
    precision: str = "fp32"
    compile: bool = False


class ExplainStep:
    """Explains :class:`DecodedBatch` es with one model into rows of :func:`step_schema`."""

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        settings: MapSettings,
        device: torch.device,
    ) -> None:
        self.model = model
        self.spec = spec
        self.settings = settings
        self.device = device
        self.task = None
        if settings.task is not None:
            from ..tasks import prepare_task

            self.task = prepare_task(settings.task, model, spec, device)
        name = None if self.task is None else self.task.task
        self.schema = step_schema(settings.save_boxes, settings.save_masks, name)
        self.trunk: CompiledTrunk | None = None
        self.channels_last = False  # inputs in channels-last (the local job's layout choice)

    def compile_for(self, batch_size: int) -> str | None:
        """Compile the model's trunk for batches of ``batch_size`` (``settings.compile``); the
        reason it runs eagerly instead, or None. :meth:`close` gives the model back."""
        from ..methods import get_method
        from .compiled import CompiledTrunk
        from .layout import to_layout

        s = self.settings
        if not s.compile or self.trunk is not None:
            return None
        if self.task is not None:
            return f"the {self.task.task} task explains its own outputs eagerly"
        guided = [m for m in s.methods if get_method(m).needs_guided_gradients]
        if guided:
            return f"{', '.join(guided)} need(s) the trunk's input gradients"
        zeros = self.spec.example_input(self.device).repeat(batch_size, 1, 1, 1)
        example = to_layout(zeros, self.channels_last)
        trunk = CompiledTrunk(self.model, s.layers, example, s.precision, s.mode)
        if trunk.error is not None:
            return trunk.error
        self.trunk = trunk
        log.info("compiled the trunk before %s: %s", ", ".join(s.layers), ", ".join(trunk.names))
        return None

    def close(self) -> None:
        """Give the model back as it came (its trunk uncompiled)."""
        if self.trunk is not None:
            self.trunk.restore()
            self.trunk = None

    def __call__(self, batch: DecodedBatch) -> pa.Table:
        if self.task is not None:
            from .task_rows import task_rows

            return self._table(task_rows(self, self.task, batch))
        ok = [i for i, error in enumerate(batch.errors) if error is None]
        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        results = self._explain(batch, ok)
        for i in range(len(batch)):
            outcome = results.get(i)
            if not isinstance(outcome, tuple):
                self.add_error(columns, batch, i, batch.errors[i] or outcome or "not explained")
                continue
            result, j = outcome
            classes = [int(c) for c in result.targets[j].reshape(-1).tolist()]
            probs = (
                result.probabilities[j].reshape(-1).tolist()
                if result.probabilities is not None
                else [None] * len(classes)
            )
            top5 = self._top5(result, j)
            targets = [
                {"target": c, "label": self.spec.label(c), "probability": p, "top5": top5}
                for c, p in zip(classes, probs)
            ]
            self.add_rows(columns, batch, i, result, j, targets)
        return self._table(columns)

    def failed_batch(self, batch: DecodedBatch, error: str) -> pa.Table:
        """Rows that record every input of ``batch`` as failed with ``error``."""
        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for i in range(len(batch)):
            self.add_error(columns, batch, i, error)
        return self._table(columns)

    # -- the model's work -----------------------------------------------------------------------

    def _explain(
        self, batch: DecodedBatch, indices: list[int]
    ) -> dict[int, tuple[Explanation, int] | str]:
        """Explain the images at ``indices``: index -> (result, row in result) or error text."""
        if not indices:
            return {}
        try:
            with naming_warnings([str(batch.ids[i]) for i in indices]):
                result = self.explain_inputs(batch.x[indices])
        except CamscopeError:
            raise  # a bad layer/target/method affects every image: stop the job
        except (RuntimeError, ValueError) as err:
            if len(indices) == 1:
                log.debug("explain failed on %s", batch.ids[indices[0]], exc_info=True)
                return {indices[0]: f"{type(err).__name__}: {err}"}
            out: dict[int, tuple[Explanation, int] | str] = {}
            for i in indices:
                out.update(self._explain(batch, [i]))
            return out
        return {i: (result, j) for j, i in enumerate(indices)}

    def explain_inputs(self, x: torch.Tensor, target: Any = None) -> Explanation:
        """One :func:`camscope.explain` call on ``x`` with the settings' target (or ``target``)."""
        import torch

        from ..core.engine import explain
        from .layout import to_layout

        s = self.settings
        layer: str | list[str] = list(s.layers) if len(s.layers) > 1 else s.layers[0]
        # Explaining needs gradients: a caller (Ray Data wraps some UDFs in no_grad) must not
        # switch them off; inference mode would refuse outright. Strict: every row must have
        # every method's map, so a method that cannot run at a layer stops the job with the
        # engine's reason (nothing of that batch is committed) instead of leaving rows out.
        compiled = self.trunk.calls() if self.trunk is not None else contextlib.nullcontext()
        with torch.inference_mode(False), torch.enable_grad(), compiled:
            return explain(
                self.model,
                to_layout(x.to(self.device, non_blocking=True), self.channels_last),
                list(s.methods),
                layer,
                s.target if target is None else target,
                aug_smooth=s.aug_smooth,
                eigen_smooth=s.eigen_smooth,
                method_options=s.method_options,
                strict=True,
                mode=s.mode,
                multilabel=s.multilabel,
                precision=s.precision,
            )

    # -- rows -------------------------------------------------------------------------------

    def add_error(
        self, columns: dict[str, list[Any]], batch: DecodedBatch, i: int, error: str
    ) -> None:
        """The one row of input ``i``, which failed with ``error``."""
        row = {"id": batch.ids[i], POSITION: int(batch.positions[i]), SOURCE: batch.sources[i]}
        add_row(columns, {**row, ERROR: error})

    def add_rows(
        self,
        columns: dict[str, list[Any]],
        batch: DecodedBatch,
        i: int,
        result: Explanation,
        j: int,
        targets: list[dict[str, Any]],
    ) -> None:
        """The rows of input ``i`` (image ``j`` of ``result``): one per layer, method and target;
        ``targets[k]`` holds the columns of the k-th target (``target``, ``label``...), the maps
        of every layer and method are stored as the shards keep them (:meth:`stored`), with the
        weak labels and overlays the settings ask for."""
        s = self.settings
        per_class = result.targets.ndim == 2
        width, height = int(batch.widths[i]), int(batch.heights[i])
        classes = [target["target"] for target in targets]
        pngs = self._png_names(batch, i, classes, per_class)
        for layer in result.layer_names:
            for method in s.methods:
                raw = result.layer_raw[layer][method][j]
                raw = raw if per_class else raw.unsqueeze(0)  # (K, h, w) or guided (K, 3, H, W)
                heat = result.layer_maps[layer][method][j]
                heat = heat if per_class else heat.unsqueeze(0)  # (K, H, W) in [0, 1]
                boxes = self._boxes(heat, width, height) if s.save_boxes else None
                masks = self._masks(heat) if s.save_masks else None
                if s.aug_smooth and raw.ndim == 3:
                    # the raw maps of four scales do not add up (core.smoothing): the map kept
                    # is the smoothed one, in [0, 1], at --map-size or else the raw map's size
                    size = s.map_size or (int(raw.shape[-2]), int(raw.shape[-1]))
                    raw = self._resize(heat, size, antialias=True)
                half, scale = self.stored(raw)
                for k, target in enumerate(targets):
                    row = {
                        **target,
                        "id": batch.ids[i],
                        "width": width,
                        "height": height,
                        "model": self.spec.name,
                        "layer": layer,
                        "method": method,
                        "rank": k,
                        "map": half[k].reshape(-1),
                        "map_shape": list(half[k].shape),
                        "map_scale": float(scale[k]),
                        "png": None if pngs is None else pngs[method, k],
                        POSITION: int(batch.positions[i]),
                        SOURCE: batch.sources[i],
                    }
                    if boxes is not None:
                        row["box"] = boxes[k]
                    if masks is not None:
                        row["mask"], row["mask_shape"] = masks[k]
                    add_row(columns, row)
        if pngs is not None:
            self._write_pngs(batch, i, result, j, pngs)

    def stored(self, raw: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """``(K, ...)`` raw maps as the shards keep them: at ``--map-size``, divided by their
        ``map_scale`` (the largest magnitude, 1 for an all-zero map), in float16."""
        import torch

        stored = self._resize(raw.float())
        scale = stored.flatten(1).abs().amax(1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (stored / scale.view(-1, *[1] * (stored.ndim - 1))).half().cpu().numpy(), scale

    def _top5(self, result: Explanation, j: int) -> list[dict[str, Any]] | None:
        prediction = result.prediction  # softmax, or sigmoid for sigmoid heads
        if prediction is None:
            return None
        return [
            {"class": c, "label": self.spec.label(c), "probability": p}
            for c, p in prediction.ranked(j, 5)
        ]

    def _resize(
        self, raw: torch.Tensor, size: tuple[int, int] | None = None, antialias: bool = False
    ) -> torch.Tensor:
        """The map at ``size`` (default ``--map-size``; bilinear, as explain upsamples), else as
        it is."""
        import torch.nn.functional as F

        size = size or self.settings.map_size
        if size is None or tuple(raw.shape[-2:]) == tuple(size):
            return raw
        lead = raw.shape[:-2]
        flat = raw.float().reshape(-1, 1, *raw.shape[-2:])
        up = F.interpolate(
            flat, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias
        )
        return up.reshape(*lead, *size)

    def _boxes(self, heat: torch.Tensor, width: int, height: int) -> list[list[float]]:
        from ..metrics.localization import wsol_boxes

        boxes = wsol_boxes(heat.float(), self.settings.threshold)
        h, w = heat.shape[-2:]
        scale = boxes.new_tensor([width / w, height / h, width / w, height / h])
        return (boxes * scale).cpu().tolist()

    def _masks(self, heat: torch.Tensor) -> list[tuple[bytes, list[int]]]:
        import numpy as np

        from ..metrics.localization import largest_component, threshold_mask

        maps = self._resize(heat.float())
        keep = largest_component(threshold_mask(maps, self.settings.threshold)).cpu().numpy()
        return [(np.packbits(m.reshape(-1)).tobytes(), list(m.shape)) for m in keep]

    def _table(self, columns: dict[str, list[Any]]) -> pa.Table:
        import pyarrow as pa

        arrays = [
            _half_lists(columns[f.name]) if f.name == "map" else pa.array(columns[f.name], f.type)
            for f in self.schema
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    # -- pictures -----------------------------------------------------------------------------

    def _png_names(
        self, batch: DecodedBatch, i: int, classes: list[int], per_class: bool
    ) -> dict[tuple[str, int], str] | None:
        """``(method, rank) -> file`` below the PNG folder, from the input's stem (unique in the
        job: :func:`camscope.batch.resume.plan_inputs`), or None without ``--save-png``."""
        if self.settings.png_dir is None:
            return None
        stem = (batch.stems[i] if batch.stems else "") or png_stem(batch.ids[i])
        return {
            (method, k): overlay_name(stem, method, cls if per_class else None)
            for method in self.settings.methods
            for k, cls in enumerate(classes)
        }

    def _write_pngs(
        self,
        batch: DecodedBatch,
        i: int,
        result: Explanation,
        j: int,
        names: dict[tuple[str, int], str],
    ) -> None:
        from PIL import Image

        from .. import io, viz

        s = self.settings
        assert s.png_dir is not None
        image = batch.images[i] if batch.images is not None else None
        picture = (
            Image.fromarray(image)
            if image is not None
            else io.load_image(batch.sources[i], max_pixels=io.DEFAULT_MAX_PIXELS)
        )
        per_class = result.targets.ndim == 2
        for (method, k), name in names.items():
            maps = result.maps[method][j][k] if per_class else result.maps[method][j]
            heat = io.resize_map(maps, (picture.height, picture.width))
            target = Path(s.png_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            # a killed job never leaves half a picture
            write_picture(target, viz.overlay(picture, heat, s.colormap, s.alpha))


_UNSAFE_PART = re.compile(r"[^\w.+-]+")


def png_stem(id_: str) -> str:
    """A relative file path for an id's overlays: its folders kept, nothing outside the PNG folder
    (``..`` and absolute parts dropped), characters outside letters, digits, ``._+-`` replaced."""
    parts = [p for p in re.split(r"[/\\]+", id_) if p not in ("", ".", "..")]
    safe = [_UNSAFE_PART.sub("_", p).strip() or "_" for p in parts] or ["_"]
    return "/".join(safe)


def overlay_name(stem: str, method: str, target: int | None = None) -> str:
    """The overlay file of a stem, a method and (for several targets per image) a class:
    ``<stem>.<method>[.<class>].png``."""
    return f"{stem}.{method}" + (f".{target}" if target is not None else "") + ".png"


def _half_lists(values: list[np.ndarray | None]) -> pa.Array:
    """``list<halffloat>`` from float16 vectors (None for failed inputs), built in one copy."""
    import numpy as np
    import pyarrow as pa

    lengths = [0 if v is None else len(v) for v in values]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    flat = [v for v in values if v is not None]
    data = np.concatenate(flat) if flat else np.zeros(0, dtype=np.float16)
    mask = pa.array([v is None for v in values])
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(data.astype(np.float16, copy=False)), mask=mask
    )


def report_failures(
    rows: pa.Table, skip: Callable[[Sample, str], None], told: set[str] | None = None
) -> None:
    """Tell ``skip`` about every input that a step's ``rows`` record as failed, but those in
    ``told`` (the walker reported that their decoding failed)."""
    import pyarrow.compute as pc

    from ..data.dataset import Sample

    bad = rows.filter(pc.is_valid(rows.column(ERROR)))
    columns = (bad.column(c).to_pylist() for c in ("id", SOURCE, ERROR))
    for id_, source, reason in zip(*columns):
        if id_ not in (told or ()):
            skip(Sample(id_, source), reason)

"""Explanations written as files: overlays, grids and ``.npy`` maps per image (``camscope explain``).

:func:`explain_groups` explains a chunk of loaded images in one :func:`camscope.explain` call and
falls back to one call per image when the chunk fails for a reason that is not the user's request;
:class:`PictureWriter` turns one image's part of the result into files and a summary record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CamscopeError
from .inputs import InputItem

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

    from ..core.result import Explanation
    from ..models import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class LoadedImage:
    """One decoded input image, its model input, and the seconds spent loading it."""

    item: InputItem
    image: Image.Image
    x: torch.Tensor
    seconds: float


def explain_groups(
    model: nn.Module,
    loaded: list[LoadedImage],
    methods: list[str],
    layers: list[str],
    target: str | int,
    device: torch.device,
    calls: dict[str, Any],
) -> list[tuple[list[LoadedImage], tuple[Explanation, float] | None, str | None]]:
    """Explain a chunk in one call; if that fails for a reason other than a usage error, retry
    image by image so one bad image does not take the others with it."""
    import torch

    from ..core.engine import explain

    if not loaded:
        return []

    def attempt(group: list[LoadedImage]) -> tuple[Explanation, float]:
        began = time.perf_counter()
        x = torch.cat([entry.x for entry in group]).to(device)
        layer = layers if len(layers) > 1 else layers[0]
        result = explain(model, x, methods, layer, target, **calls)
        return result, time.perf_counter() - began

    try:
        return [(loaded, attempt(loaded), None)]
    except CamscopeError:
        raise  # a bad layer/target/method affects every image: stop with exit code 2
    except (RuntimeError, ValueError) as err:
        if len(loaded) == 1:
            log.debug("explain failed", exc_info=True)
            return [(loaded, None, f"{type(err).__name__}: {err}")]
    results: list[tuple[list[LoadedImage], tuple[Explanation, float] | None, str | None]] = []
    for entry in loaded:
        results.extend(explain_groups(model, [entry], methods, layers, target, device, calls))
    return results


class PictureWriter:
    """Turns one image's part of an :class:`Explanation` into files and a summary record."""

    def __init__(
        self,
        out: Path,
        methods: list[str],
        spec: ModelSpec,
        colormap: str,
        alpha: float,
        save_npy: bool,
    ) -> None:
        self.out = out
        self.methods = methods
        self.spec = spec
        self.colormap = colormap
        self.alpha = alpha
        self.save_npy = save_npy

    def _label(self, cls: int) -> str:
        return self.spec.label(cls)

    def _entry(self, cls: int, probability: float | None) -> dict[str, Any]:
        return {
            "class": cls,
            "label": self._label(cls),
            "probability": None if probability is None else round(probability, 6),
        }

    def _picture(
        self, image: Image.Image, fused: torch.Tensor, raw: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(heat map at image size, guided RGB at image size or None)."""
        import torch.nn.functional as F

        from .. import io, viz

        size = (image.height, image.width)
        heat = io.resize_map(fused, size)
        if raw.ndim == 3:  # input-space (guided) gradients (3, H, W)
            up = F.interpolate(raw[None].float(), size=size, mode="bilinear", align_corners=False)[
                0
            ]
            return heat, viz.guided_to_rgb(up.cpu().numpy())
        return heat, None

    def write(
        self, item: InputItem, image: Image.Image, result: Explanation, i: int
    ) -> dict[str, Any]:
        import numpy as np

        from .. import io, viz

        out = self.out
        methods = [m for m in self.methods if m in result.maps]  # skipped ones have no map
        per_class = result.targets.ndim == 2
        class_ids = [int(c) for c in result.targets[i].reshape(-1).tolist()]
        probs: list[float | None] = (
            [float(p) for p in result.probabilities[i].reshape(-1).tolist()]
            if result.probabilities is not None
            else [None] * len(class_ids)
        )
        top5: list[dict[str, Any]] = []
        if result.logits is not None:
            p_all = result.logits[i].float().softmax(-1)
            values, indices = p_all.topk(min(5, p_all.numel()))
            top5 = [
                self._entry(int(c), float(p)) for p, c in zip(values.tolist(), indices.tolist())
            ]
        layer_names = [result.layer] if isinstance(result.layer, str) else list(result.layer)
        files: list[str] = []
        rows: list[tuple[str, list[viz.Panel]]] = []

        def pick(t: torch.Tensor, k: int) -> torch.Tensor:
            return t[i, k] if per_class else t[i]

        def caption(k: int) -> str:
            p = probs[k]
            label = self._label(class_ids[k])
            return label if p is None else f"{label} (p={p:.2f})"

        for k, cls in enumerate(class_ids):
            suffix = f".{cls}" if per_class else ""
            panels: list[viz.Panel] = []
            for method in methods:
                heat, rgb = self._picture(
                    image, pick(result.maps[method], k), pick(result.raw[method], k)
                )
                png = out / f"{item.stem}.{method}{suffix}.png"
                if rgb is not None:
                    from PIL import Image as PILImage

                    PILImage.fromarray(rgb, mode="RGB").save(png)
                    panels.append(viz.Panel(f"{method}\n{caption(k)}", rgb=rgb))
                else:
                    viz.overlay(image, heat, self.colormap, self.alpha).save(png)
                    panels.append(viz.Panel(f"{method}\n{caption(k)}", heatmap=heat))
                files.append(png.name)
                if self.save_npy:
                    npy = out / f"{item.stem}.{method}{suffix}.npy"
                    io.save_npy(npy, np.asarray(heat, dtype=np.float32))
                    files.append(npy.name)
            row_label = f"top-{k + 1}: {self._label(cls)}" if per_class else ""
            if not per_class and len(layer_names) > 1:
                row_label = f"mean of {len(layer_names)} layers"
                for panel in panels:  # guided maps are not fused: say which layer they show
                    if panel.rgb is not None:
                        method, _, rest = panel.title.partition("\n")
                        panel.title = f"{method} ({layer_names[0]})\n{rest}"
            rows.append((row_label, panels))
        if not per_class and len(layer_names) > 1:
            layer_rows = []
            for name in layer_names:
                panels = []
                for method in [m for m in methods if m in result.layer_maps[name]]:
                    heat, rgb = self._picture(
                        image, result.layer_maps[name][method][i], result.layer_raw[name][method][i]
                    )
                    title = f"{method}\n{caption(0)}"
                    panels.append(
                        viz.Panel(title, rgb=rgb)
                        if rgb is not None
                        else viz.Panel(title, heatmap=heat)
                    )
                layer_rows.append((f"layer {name}", panels))
            rows = layer_rows + rows
        grid = out / f"{item.stem}.grid.png"
        layer_text = ", ".join(layer_names)
        if len(layer_text) > 60:
            layer_text = f"{len(layer_names)} layers"
        viz.save_grid(
            grid,
            image,
            rows,
            colormap=self.colormap,
            alpha=self.alpha,
            title=f"{item.stem}  |  {self.spec.name}  |  "
            + ("layer" if len(layer_names) == 1 else "layers")
            + f": {layer_text}",
        )
        files.append(grid.name)
        return {
            "source": item.source,
            "stem": item.stem,
            "size": [image.width, image.height],
            "top5": top5,
            "target": self._entry(class_ids[0], probs[0]),
            "targets": [self._entry(c, p) for c, p in zip(class_ids, probs)],
            "layers": layer_names,
            "methods": methods,
            "skipped": dict(result.skipped),
            "warnings": list(result.warnings),
            "files": files,
            "seconds": 0.0,
            "error": None,
        }

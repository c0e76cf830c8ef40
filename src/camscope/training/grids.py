"""``--explain N``: Grad-CAM grids of N validation images at the first, middle and last layer.

Seed 003 shows Grad-CAM of its CIFAR-100 models at intermediate layers and at the last one, where
a 32-px image has shrunk to a 1x1 map. Each grid here has one row per layer (``first`` and
``middle`` ``Conv2d`` in execution order, and ``auto``, the last feature map Grad-CAM reads by
default; :mod:`camscope.core.layers`), titled with the layer's name and map size, the true and
the predicted class. On the built-in set, whose boxes are known, each row also gives the share of
the map's energy inside the object's box (:func:`camscope.metrics.localization.energy_pointing`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..core.engine import explain
from ..core.layers import resolve_layers
from ..data.dataset import Sample
from ..metrics.localization import energy_pointing
from ..models.spec import model_device
from ..viz import Panel, save_grid
from .transforms import ImageTransform, Normalize

log = logging.getLogger(__name__)

ROWS = (("first", "first"), ("middle", "middle"), ("last", "auto"))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "image"


def write_grids(
    model: nn.Module,
    samples: Sequence[Sample],
    classes: list[str],
    count: int,
    out_dir: Path,
    *,
    image_size: int,
    interpolation: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    method: str = "gradcam",
) -> list[dict[str, Any]]:
    """Write ``out_dir/<i>_<name>.png`` for the first ``count`` readable images of ``samples``.

    Returns one record per image: name, true and predicted class, and per layer its name, map
    size and (with boxes) the energy share inside the box.
    """
    device = model_device(model)
    transform = ImageTransform(image_size, interpolation, "eval")
    normalize = Normalize(mean, std, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for sample in samples:
        if len(records) >= count:
            break
        try:
            picture = sample.image if sample.image is not None else sample.decode()
        except Exception as err:  # a corrupt file was reported during training already
            log.info("explain grid: skipping %s (%s)", sample.source, err)
            continue
        pixels = transform(picture)
        x = normalize(pixels[None].to(device))
        shown = Image.fromarray(pixels.permute(1, 2, 0).numpy())
        rows = []
        record: dict[str, Any] = {"image": sample.source, "true": classes[sample.class_ids[0]]}
        layers: dict[str, Any] = {}
        for tag, spec in ROWS:
            name = resolve_layers(model, spec, x)[0][0]
            res = explain(model, x, method, layer=name)
            heat = res.maps[method][0].float()
            size = tuple(int(v) for v in res.raw[method].shape[-2:])
            predicted = int(res.targets[0])
            prob = float(res.probabilities[0]) if res.probabilities is not None else float("nan")
            entry: dict[str, Any] = {"layer": name, "map_size": list(size)}
            title = f"{method}: {classes[predicted]} (p={prob:.2f})"
            if sample.boxes:
                box = _scaled_box(sample.boxes[0], picture, image_size)
                share = float(
                    energy_pointing(heat[None], torch.tensor([[box]]), torch.tensor([[True]]))[0]
                )
                entry["energy_in_box"] = round(share, 4)
                title += f"\nenergy in box {share:.2f}"
            layers[tag] = entry
            rows.append(
                (f"{tag}: {name} ({size[0]}x{size[1]})", [Panel(title, heat.cpu().numpy())])
            )
        record["predicted"] = classes[predicted]
        record["layers"] = layers
        path = out_dir / f"{len(records):02d}_{_safe(sample.source.rsplit('/', 1)[-1])}.png"
        save_grid(path, shown, rows, title=f"true class: {record['true']}")
        record["file"] = path.name
        records.append(record)
    return records


def _scaled_box(
    box: tuple[float, float, float, float], picture: Any, size: int
) -> tuple[float, float, float, float]:
    height, width = picture.shape[:2] if isinstance(picture, np.ndarray) else picture.size[::-1]
    sx, sy = size / width, size / height
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)

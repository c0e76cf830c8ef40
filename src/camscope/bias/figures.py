"""``bias_grid.png`` of the bias experiment: where each model looks, class by class.

One row per class. The first two panels are the class's mean Grad-CAM map over the test images
each model *predicts* as that class (the audit's mean map, scaled to its maximum, hot-spot box in
cyan, the class's own cue square in green). The last three show one test image of the class whose
cue belongs to *another* class (the first such image of the split, so the choice is not ours) and
each model's map for its own top-1 class, titled with that prediction: a model that follows the cue
names the cue's class and looks at the corner; one that follows the object names the object and
looks at it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from ..audit.run import AuditRun
from ..data.biased import CUE_PLACES, BiasedBenchmark
from ..models import ModelSpec
from ..outputs import write_atomic


def conflicting_index(bench: BiasedBenchmark, k: int) -> int | None:
    """The first test image of class ``k`` whose cue is another class's (None if there is none)."""
    for i in range(k, len(bench), len(bench.names)):
        if bench.cue_of(i) != k:
            return i
    return None


def _explained(model: nn.Module, spec: ModelSpec, image: np.ndarray, method: str) -> tuple:
    from ..core.engine import explain
    from ..io import preprocess

    x = preprocess(Image.fromarray(image), spec)
    result = explain(model, x, method, strict=True)
    heat = result.maps[method][0].detach().float().cpu().numpy()
    return heat, spec.label(int(result.targets[0]))


def write_grid(
    runs: Mapping[str, AuditRun],
    models: Mapping[str, tuple[nn.Module, ModelSpec]],
    bench: BiasedBenchmark,
    path: Path,
    method: str = "gradcam",
) -> Path:
    """Draw the grid described in the module docstring into ``path`` (PNG)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from ..viz import DEFAULT_COLORMAP, overlay

    names = list(runs)
    rows = len(bench.names)
    fig = Figure(figsize=(2.0 * (2 + 1 + len(names)), 2.1 * rows), dpi=100)
    axes = fig.subplots(rows, 3 + len(names), squeeze=False)
    side = bench.size

    def box(ax: Any, xyxy: tuple[float, ...], colour: str) -> None:
        x0, y0, x1, y1 = xyxy
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5))

    for k, cls in enumerate(bench.names):
        cue = bench.cue_box(k)
        for j, name in enumerate(names):
            ax = axes[k, j]
            summary = runs[name].classes.get(cls)
            if summary is not None and summary.mean_map is not None:
                m = summary.mean_map.numpy()
                grid = m.shape[0]
                ax.imshow(m / m.max() if m.max() > 0 else m, cmap=DEFAULT_COLORMAP, vmin=0, vmax=1)
                scale = grid / side
                box(ax, tuple(v * scale - 0.5 for v in cue), "lime")
                if summary.hotspot is not None:
                    box(ax, tuple(v * grid - 0.5 for v in summary.hotspot.box), "cyan")
                flag = "flagged" if summary.flags else "not flagged"
                ax.set_title(f"{name}: mean map\n'{cls}' ({flag})", fontsize=8)
            else:
                ax.set_title(f"{name}: no image\npredicted '{cls}'", fontsize=8)
        index = conflicting_index(bench, k)
        column = len(names)
        if index is not None:
            rendered = bench.render(index)
            ax = axes[k, column]
            ax.imshow(rendered.image)
            ax.set_title(
                f"a '{cls}' with the cue\nof '{rendered.cue}' ({CUE_PLACES[bench.cue_of(index)]})",
                fontsize=8,
            )
            for j, name in enumerate(names):
                model, spec = models[name]
                heat, predicted = _explained(model, spec, rendered.image, method)
                picture = overlay(Image.fromarray(rendered.image).resize(heat.shape[::-1]), heat)
                ax = axes[k, column + 1 + j]
                ax.imshow(picture.resize((side, side)))
                ax.set_title(f"{name} model says\n'{predicted}'", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "Grad-CAM of the model trained on the biased set and of the one trained on the "
        "rebalanced set (test split: cue and class independent)",
        fontsize=9,
    )
    fig.tight_layout()
    return write_atomic(path, lambda handle: fig.savefig(handle, format="png"))

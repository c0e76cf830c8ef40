"""The robustness family: how much each map changes under small input noise.

The math is :mod:`camscope.metrics.robustness`; here it meets one batch. Each image gets
``robustness_samples`` noisy copies, uniform noise of radius ``robustness_radius`` on the [0, 1]
pixel scale (divided by the model's ``std`` into model-input units), seeded by the image's id so
that a resumed or re-batched run draws the same noise; the copies are explained again with every
method for the same class, ``batch_size`` at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import MetricColumn, Scores, register_metric

if TYPE_CHECKING:
    from ..context import BatchContext

#: Values that are fractions in :func:`camscope.metrics.robustness.robustness_scores`, shown in %.
_PERCENT = ("topk_intersection", "kept")


@register_metric(
    "robustness",
    order=110,
    summary="max-/avg-sensitivity, local Lipschitz, top-k intersection, centre-of-mass shift of "
    "each map under --robustness-samples noisy copies (uniform, --robustness-radius)",
    columns=(
        MetricColumn("max_sensitivity", "Max-sensitivity", False),
        MetricColumn("avg_sensitivity", "Avg-sensitivity", False),
        MetricColumn("lipschitz", "Local Lipschitz", False),
        MetricColumn("topk_intersection", "Top-k intersection %", True, percent=True),
        MetricColumn("com_shift", "Centre-of-mass shift px", False),
    ),
    extras=("kept",),
)
def robustness(ctx: BatchContext) -> Scores:
    """Every robustness number per method and image; undefined ones (all-zero maps, no copy that
    kept the top-1 class) are None; ``kept`` is the % of copies that kept the top-1 class."""
    import math
    import zlib

    import torch

    from ...metrics import robustness as rm

    cfg = ctx.config
    seeds = [zlib.crc32(s.id.encode()) for s in ctx.samples]
    noise = rm.uniform_noise(ctx.x.shape[1:], cfg.robustness_samples, cfg.robustness_radius, seeds)
    deltas = noise / torch.tensor(ctx.std, dtype=torch.float32).view(1, 1, -1, 1, 1)
    found = rm.robustness_scores(
        ctx.explain, ctx.x, ctx.maps, ctx.targets, ctx.top_classes[:, 0], deltas, cfg.batch_size
    )
    out = ctx.empty()
    for m in ctx.methods:
        for key, values in found[m].items():
            scale = 100.0 if key in _PERCENT else 1.0
            for i, row in enumerate(out[m]):
                v = float(values[i])
                row[key] = None if math.isnan(v) else scale * v
    return out

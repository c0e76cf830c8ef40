"""Localization families: WSOL boxes, the pointing games, energy share, class discrimination.

The math is :mod:`camscope.metrics.localization`; here it meets one batch. Boxes are those of
the explained (first) object unless a column says otherwise (top-k localization error and top-5
pointing score each of the model's top classes against every object).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import MetricColumn, Scores, register_metric

if TYPE_CHECKING:
    from ..context import BatchContext


@register_metric(
    "loc",
    order=10,
    default=True,
    summary="WSOL box (15% of max, largest 8-connected segment): top-1/top-5 loc. error, IoU",
    columns=(
        MetricColumn("loc_error_top1", "Top-1 loc. error %", False, percent=True, binary=True),
        MetricColumn("loc_error_top5", "Top-5 loc. error %", False, percent=True, binary=True),
        MetricColumn("gt_known_loc", "GT-known loc. %", True, percent=True, binary=True),
        MetricColumn("iou", "IoU", True),
    ),
    extras=("box",),
)
def loc(ctx: BatchContext) -> Scores:
    """Top-k localization error (each top class's own map and box), IoU and GT-known
    localization of the explained class's box; ``box`` is that box in input pixels."""
    from ...metrics import localization as lm

    out, truth, own = ctx.empty(), ctx.boxes(), ctx.boxes(0)
    for m in ctx.methods:
        b, k = ctx.top_maps[m].shape[:2]
        guesses = lm.wsol_boxes(ctx.top_maps[m].flatten(0, 1), ctx.config.threshold)
        ok = lm.localization_correct(guesses.reshape(b, k, 4), ctx.top_classes, *truth)
        box = lm.wsol_boxes(ctx.maps[m], ctx.config.threshold)
        iou = lm.box_iou(box[:, None], own.boxes).masked_fill(~own.valid, 0).amax(1)
        for i, row in enumerate(out[m]):
            row["loc_error_top1"] = 100.0 * (1 - float(ok[i, 0]))
            row["loc_error_top5"] = 100.0 * (1 - float(ok[i, min(4, k - 1)]))
            row["iou"] = float(iou[i])
            row["gt_known_loc"] = 100.0 * float(iou[i] >= lm.IOU_CORRECT)
            row["box"] = [round(float(v), 1) for v in box[i]]
    return out


@register_metric(
    "pointing",
    order=20,
    default=True,
    summary="pointing game (15 px tolerance) and top-5 pointing with a reject option",
    columns=(
        MetricColumn("pointing", "Pointing %", True, percent=True, binary=True),
        MetricColumn("pointing_top5", "Top-5 pointing (reject) %", True, percent=True),
    ),
)
def pointing(ctx: BatchContext) -> Scores:
    """The explained class's pointing game, and top-5 pointing with the reject option (when the
    model has more than one class): a map is rejected when its raw positive peak is below
    ``reject_threshold`` times the largest of the image's top-class maps."""
    from ...metrics import localization as lm

    out, truth, own = ctx.empty(), ctx.boxes(), ctx.boxes(0)
    tolerance = ctx.config.tolerance
    for m in ctx.methods:
        hits = lm.pointing_hits(ctx.maps[m], own.boxes, own.valid, tolerance)
        for i, row in enumerate(out[m]):
            row["pointing"] = 100.0 * float(hits[i])
        if ctx.top_classes.shape[1] < 2:
            continue
        raw = ctx.top_raw[m]  # (B, K, h, w), or (B, K, 3, H, W) for input-space attributions
        peaks = (raw.clamp(min=0) if raw.ndim == 4 else raw.abs()).flatten(2).amax(2)
        ok = lm.pointing_top5_reject(
            ctx.top_maps[m], peaks, ctx.top_classes, *truth, tolerance, ctx.config.reject_threshold
        )
        for i, row in enumerate(out[m]):
            row["pointing_top5"] = 100.0 * float(ok[i].float().mean())
    return out


@register_metric(
    "energy",
    order=30,
    default=True,
    summary="energy-based pointing game (share of map energy in the boxes)",
    columns=(MetricColumn("energy", "Energy pointing %", True, percent=True),),
)
def energy(ctx: BatchContext) -> Scores:
    """Share of the explained class's map energy inside the explained object's boxes."""
    from ...metrics import localization as lm

    out, own = ctx.empty(), ctx.boxes(0)
    for m in ctx.methods:
        share = lm.energy_pointing(ctx.maps[m], own.boxes, own.valid)
        for i, row in enumerate(out[m]):
            row["energy"] = 100.0 * float(share[i])
    return out


@register_metric(
    "discrimination",
    order=40,
    default=True,
    summary="two-object images: the map of A's class on A, not on B",
    columns=(
        MetricColumn("disc_pointing", "Discrimination pointing %", True, percent=True),
        MetricColumn("disc_energy", "Discrimination energy %", True, percent=True),
    ),
)
def discrimination(ctx: BatchContext) -> Scores:
    """Two-object images only (the others get no value): A's map against A's and B's boxes and
    B's map against B's and A's, the two directions averaged."""
    import torch

    from ...metrics import localization as lm

    out, two = ctx.empty(), ctx.two_objects()
    if not two:
        return out
    idx = torch.tensor(two, device=ctx.x.device)
    a = [t[idx] for t in ctx.boxes(0)]
    b = [t[idx] for t in ctx.boxes(1)]
    for m in ctx.methods:
        hit_a, share_a = lm.discrimination(ctx.maps[m][idx], a[0], a[2], b[0], b[2])
        hit_b, share_b = lm.discrimination(ctx.second_maps[m][idx], b[0], b[2], a[0], a[2])
        for n, i in enumerate(two):
            row = out[m][i]
            row["disc_pointing"] = 100.0 * (float(hit_a[n]) + float(hit_b[n])) / 2
            row["disc_energy"] = 100.0 * (float(share_a[n]) + float(share_b[n])) / 2
    return out

"""Faithfulness families: Average Drop / Increase in Confidence / Win, deletion and insertion,
ROAD and the rank correlation with occlusion.

The math is :mod:`camscope.metrics.faithfulness`; here it meets one batch. Every pass goes
through the batch's counted ``forward`` in chunks of ``forward_batch`` images, and probabilities
are those of :mod:`camscope.core.prediction` (softmax; a single-logit model's sigmoid). The black
substrate is the model's own black pixel, ``(0 - mean) / std`` of its
:class:`~camscope.models.ModelSpec`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..registry import MetricColumn, Scores, register_metric

if TYPE_CHECKING:
    from ..context import BatchContext


@register_metric(
    "drop",
    order=50,
    default=True,
    summary="Average Drop %, Increase in Confidence %, Win % (input x map)",
    columns=(
        MetricColumn("avg_drop", "Average Drop %", False, relative=True),
        MetricColumn(
            "increase", "Increase in Confidence %", True, percent=True, binary=True, relative=True
        ),
        MetricColumn("win", "Win %", True, percent=True, relative=True),
    ),
    extras=("signed_drop",),
)
def drop(ctx: BatchContext) -> Scores:
    """The class probability ``O`` on ``black + map * (x - black)`` against ``Y`` on the image;
    ``signed_drop`` (the unclamped drop) is what the summary ranks for Win %."""
    from ...metrics import faithfulness as fm

    out, p_full = ctx.empty(), ctx.p_full()
    for m in ctx.methods:
        explained = fm.explanation_input(ctx.x, ctx.maps[m], ctx.black)
        p_map = fm.class_probability(
            ctx.forward, explained, ctx.targets, ctx.config.forward_batch, ctx.prediction.head
        )
        drops = fm.average_drop(p_full, p_map)
        signed = fm.signed_drop(p_full, p_map)
        increase = fm.increase_in_confidence(p_full, p_map)
        for i, row in enumerate(out[m]):
            row["avg_drop"] = float(drops[i])
            row["signed_drop"] = float(signed[i])
            row["increase"] = 100.0 * float(increase[i])
    return out


def _curves(ctx: BatchContext, mode: str) -> Scores:
    """Area under the class probability as the most relevant pixels are removed (deletion) or
    put back (insertion) on the mode's substrate; ``<mode>_curve`` is the curve itself."""
    from ...metrics import faithfulness as fm

    out = ctx.empty()
    for m in ctx.methods:
        curves = fm.deletion_insertion(
            ctx.forward,
            ctx.x,
            ctx.maps[m],
            ctx.targets,
            mode=mode,
            steps=ctx.config.steps,
            substrate_kind=getattr(ctx.config, f"{mode}_substrate"),
            black=ctx.black,
            batch_size=ctx.config.forward_batch,
            head=ctx.prediction.head,
        )
        areas = fm.auc(curves)
        for i, row in enumerate(out[m]):
            row[mode] = float(areas[i])
            row[f"{mode}_curve"] = [round(float(v), 5) for v in curves[i]]
    return out


for _order, _mode, _higher_is_better in ((60, "deletion", False), (70, "insertion", True)):
    register_metric(
        _mode,
        order=_order,
        default=True,
        summary=f"{_mode} AUC (RISE; --steps, --{_mode}-substrate)",
        columns=(MetricColumn(_mode, f"{_mode.capitalize()} AUC", _higher_is_better),),
        extras=(f"{_mode}_curve",),
    )(functools.partial(_curves, mode=_mode))


@register_metric(
    "road",
    order=80,
    summary="ROAD most/least relevant first with noisy linear imputation",
    columns=(
        MetricColumn("road_morf", "ROAD MoRF", False),
        MetricColumn("road_lerf", "ROAD LeRF", True),
    ),
)
def road(ctx: BatchContext) -> Scores:
    """Mean class probability over ``road_fractions`` of imputed pixels, most relevant first
    (MoRF) and least relevant first (LeRF)."""
    from ...metrics import faithfulness as fm

    out = ctx.empty()
    for m in ctx.methods:
        for order in ("morf", "lerf"):
            curve = fm.road(
                ctx.forward,
                ctx.x,
                ctx.maps[m],
                ctx.targets,
                order=order,
                fractions=tuple(ctx.config.road_fractions),
                batch_size=ctx.config.forward_batch,
                head=ctx.prediction.head,
            )
            for i, row in enumerate(out[m]):
                row[f"road_{order}"] = float(curve[i].mean())
    return out


@register_metric(
    "occlusion",
    order=90,
    summary="Spearman correlation with an occlusion map (shared by all methods)",
    columns=(MetricColumn("occlusion_rho", "Occlusion Spearman", True),),
)
def occlusion(ctx: BatchContext) -> Scores:
    """One occlusion map per image (logit drops, patches of 0 = the mean colour), correlated
    with each method's map pooled over the same patches."""
    from ...metrics import faithfulness as fm

    out, cfg = ctx.empty(), ctx.config
    occ = fm.occlusion_map(
        ctx.forward,
        ctx.x,
        ctx.targets,
        cfg.occlusion_patch,
        cfg.occlusion_stride,
        baseline=0.0,
        batch_size=cfg.forward_batch,
        head=ctx.prediction.head,
    )
    for m in ctx.methods:
        rho = fm.occlusion_spearman(ctx.maps[m], occ, cfg.occlusion_patch, cfg.occlusion_stride)
        for i, row in enumerate(out[m]):
            row["occlusion_rho"] = float(rho[i])
    return out

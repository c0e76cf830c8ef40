"""Occlusion sensitivity.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014, Sec. 4.2: a
grey square slides over the image and the drop of the class score shows which regions the
decision depends on. For patch ``P`` (a ``patch`` x ``patch`` square at one grid position) filled
with the baseline ``b``:

.. math::
    d^c_P = y^c(x) - y^c(x \\text{ with } P \\leftarrow b), \\qquad
    L^c(u) = \\frac{1}{|\\{P \\ni u\\}|} \\sum_{P \\ni u} d^c_P

``y^c`` is the target's logit (the score Grad-CAM's own occlusion comparison uses, seed 001 Sec.
6; for a single-logit model ``+z`` for class 1 and ``-z`` for class 0, as the engine scores them,
:class:`~camscope.core.prediction.ClassHead`); the map at pixel ``u`` is the mean drop of the patches that cover it, at the input's
resolution (as Captum's ``Occlusion``), so ``raw`` is ``(B, K, H, W)`` and signed: negative where
covering the region *raises* the score. ``maps`` keeps the positive part, normalised.

Options (``method_options``): ``patch`` (default: a seventh of the shorter input side, 32 px at
224 px), ``stride`` (default: half the patch), ``baseline`` (default 0 in model-input units, the
normalisation mean colour: a grey square as in the paper), ``batch_size``, ``progress``,
``optimize``, ``fast_model``, ``precision``. Cost: one forward per grid position and image (13 x
13 = 169 at 224 px with the defaults), batched, on the eager eval-mode copy of the model
(:mod:`camscope.perturbation.fastpath`, made for the call or the caller's ``fast_model``; not its
TorchScript graph: drops are differences of close logits, and every pass, the unoccluded one with
its memory-measuring hooks included, must round the same way); the layer plays no part.

Deviations: the last patch of a row or column is moved to touch the border, so every pixel is
covered (Zeiler & Fergus and Captum stop where the stride stops); the passes run in eval mode;
callable targets are not supported (the occluded outputs are scored by class). With several
layers the passes run once per layer. A bfloat16 or float16 model is scored through a float32 copy
of it: the drops are differences of nearly equal logits, which half precision would round to a
few levels (on a small test network, maps differed from float32 ones by 0.08 on average).

Example:
    >>> explain(model, x, "occlusion", method_options={"patch": 32, "stride": 16})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import Tensor, nn

from ..core.context import LayerContext
from ..core.registry import PassQuery, register_method
from ..errors import UsageError
from ..perturbation.masked import CPU_CAP_WHOLE, Scorer, batch_size_for, output_bytes
from ..perturbation.occlusion import (
    default_patch,
    occlusion_drops,
    occlusion_grid,
    spread_to_pixels,
)
from ..perturbation.options import PassCounter, Settings, class_targets, option, positive_int


def _float32_model(model: nn.Module) -> nn.Module:
    """``model`` itself, or a float32 copy when its weights are in half precision."""
    low = (torch.bfloat16, torch.float16)
    if not any(p.dtype in low for p in model.parameters()):
        return model
    return copy.deepcopy(model).float()


def _geometry(ctx: LayerContext) -> tuple[int, int, float]:
    size = (ctx.input.shape[-2], ctx.input.shape[-1])
    patch_default, _ = default_patch(size)
    patch = positive_int(ctx.method_options, "patch", None) or patch_default
    stride = positive_int(ctx.method_options, "stride", None) or max(1, -(-patch // 2))
    baseline = option(ctx.method_options, "baseline", 0.0, (int, float))
    if patch > min(size):
        raise UsageError(
            f"occlusion: patch {patch} px is larger than the {size[0]} x {size[1]} input; "
            "pass a smaller method option 'patch'"
        )
    return patch, stride, float(baseline)


def _passes(query: PassQuery) -> int:
    """One unoccluded forward plus one per patch position (the layer plays no part)."""
    patch_default, _ = default_patch(query.input_size)
    patch = query.option("patch", patch_default)
    stride = query.option("stride", max(1, -(-patch // 2)))
    if patch > min(query.input_size):
        return 0  # the call itself refuses the patch
    rows, cols = occlusion_grid(query.input_size, patch, stride)
    return len(rows) * len(cols) + 1


@register_method(
    "occlusion",
    needs_gradients=False,
    paper="Zeiler & Fergus, ECCV 2014",
    family="perturbation",
    summary="drop of the target logit when a grey square covers each region (mean over the "
    "patches covering a pixel); options `patch`, `stride`, `baseline`",
    passes=_passes,
    passes_text="P + 1, P = patch positions (13 x 13 = 169 at 224 px by default)",
)
def occlusion(ctx: LayerContext) -> Tensor:
    """Drop of the target logit when a square patch of the input is covered (mean per pixel)."""
    patch, stride, baseline = _geometry(ctx)
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, "occlusion")
    x = ctx.input.detach()
    size = (x.shape[-2], x.shape[-1])
    model = _float32_model(ctx.model)
    if model is not ctx.model:  # the caller's fast copy is of the half-precision model
        settings = replace(settings, fast_model=None)
    scorer = Scorer(model, settings, x.device)
    rows, cols = occlusion_grid(size, patch, stride)
    progress = PassCounter(x.shape[0] * (len(rows) * len(cols) + 1), settings.progress, "occlusion")
    ids_dev = ids.to(x.device)

    def score_fn(inputs: Tensor, class_ids: Tensor) -> Tensor:
        return ctx.head.scores(scorer.logits(inputs, traced=False), class_ids)

    try:
        with scorer.running():
            # The unoccluded pass runs eagerly with hooks that measure the memory of one row.
            with output_bytes(scorer.model) as used:
                full = ctx.head.scores(scorer.logits(x, traced=False), ids_dev)
            progress.step(x.shape[0])
            per_row = used[0] // max(1, x.shape[0]) + 3 * x[:1].numel() * x.element_size()
            batch = settings.batch_size or batch_size_for(per_row, x.device, 1 << 30, CPU_CAP_WHOLE)
            drops = occlusion_drops(
                score_fn,
                x,
                ids_dev,
                patch,
                stride,
                baseline,
                batch,
                full=full,
                progress=progress.step,
            )
    finally:
        progress.close()
    return spread_to_pixels(drops, size, patch, stride).to(ctx.activations)

"""The sanity family: cascading model-parameter randomization (Adebayo et al., NeurIPS 2018).

A model-level check, not a per-image column: :mod:`camscope.evaluation.run` runs it once per run
on the first ``sanity_images`` readable images and stores it in ``sanity.json`` (the report draws
the cascade; the verdict names the methods that fail). The math is
:mod:`camscope.metrics.sanity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..registry import register_metric

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..config import EvalConfig


@register_metric(
    "sanity",
    order=100,
    scope="model",
    summary="cascading parameter randomization on --sanity-images images",
)
def sanity(model: nn.Module, inputs: Sequence[Tensor], config: EvalConfig) -> dict[str, Any]:
    """Per layer of ``config.layers``: the cascade's steps, Spearman and SSIM of every method's
    maps against the trained model's, and whether each method passes."""
    import torch

    from ...core.layers import resolve_layers
    from ...metrics.sanity import FAIL_SIMILARITY, cascading_randomization

    result: dict[str, Any] = {"images": len(inputs), "fail_below": FAIL_SIMILARITY, "layers": {}}
    if not inputs:
        return result
    x = torch.stack(list(inputs))
    for layer in config.layers:
        name = resolve_layers(model, layer, x[:1])[0][0] if layer == "auto" else layer
        res = cascading_randomization(
            model, x, config.methods, layer=name, method_options=config.method_options
        )
        result["layers"][name] = {
            "steps": res.steps,
            "spearman": res.spearman,
            "ssim": res.ssim,
            "passed": {m: res.passed(m) for m in config.methods},
        }
    return result

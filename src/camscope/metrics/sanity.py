"""Sanity check: cascading model-parameter randomization (Adebayo et al., NeurIPS 2018, Sec. 3.1).

Layers are re-initialised one unit at a time from the top of the network (logits first) down,
cumulatively, and after each step the maps are recomputed for the same images and classes and
compared with the maps of the trained model. A method whose maps stay similar while the weights
it is supposed to explain are destroyed is insensitive to the model and *fails* the check.

Similarity measures (both on maps in [0, 1], as the paper):

* Spearman rank correlation of the map pixels (:func:`camscope.metrics.faithfulness.spearman`);
* SSIM (Wang et al. 2004) with an 11 x 11 Gaussian window, sigma 1.5, data range 1
  (:func:`ssim`, scikit-image's: 30-60x faster on the CPU than the batched torch version it
  replaced, see docs/architecture.md).

A copy of the model is randomised; the caller's model is never changed.

Example:
    >>> result = cascading_randomization(model, x, ["gradcam"], layer="blocks.6")  # doctest: +SKIP
    >>> result.spearman["gradcam"][-1]  # similarity with every unit randomised  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from .faithfulness import spearman

#: A method fails when its maps after full randomization still correlate this much (Spearman).
FAIL_SIMILARITY = 0.5


def ssim(
    a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> Tensor:
    """Mean structural similarity of map pairs ``(B, H, W)`` (Wang et al., IEEE TIP 2004), by
    :func:`skimage.metrics.structural_similarity` on the CPU (``gaussian_weights=True``,
    ``use_sample_covariance=False``): Gaussian-weighted local statistics with population
    variances, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, averaged over the windows that fit inside
    the image. Returns ``(B,)`` float32 on ``a``'s device.
    """
    from skimage.metrics import structural_similarity

    if a.shape != b.shape or a.ndim != 3:
        raise UsageError(
            f"ssim needs two (batch, height, width) tensors of one shape; got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    xs, ys = (t.detach().double().cpu().numpy() for t in (a, b))
    values = [
        structural_similarity(
            x,
            y,
            win_size=window,
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=False,
            data_range=data_range,
        )
        for x, y in zip(xs, ys)
    ]
    return torch.tensor(values, dtype=torch.float32, device=a.device)


def parameter_units(model: nn.Module, x: Tensor, depth: int = 2) -> list[str]:
    """Names of the model's parameterised units in forward order (first to last).

    A unit is a module name cut to ``depth`` dotted parts (``blocks.6``, ``conv_head``,
    ``classifier``); the order is the order in which their modules first run on ``x``.
    """
    order: list[str] = []
    seen: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if not name or not any(True for _ in module.parameters(recurse=False)):
            continue

        def hook(_m: nn.Module, _i: object, _o: object, name: str = name) -> None:
            unit = ".".join(name.split(".")[:depth])
            if unit not in seen:
                seen.add(unit)
                order.append(unit)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return order


def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter under ``module``: ``reset_parameters()`` where a module has
    one (PyTorch's own default initialisation), else a normal draw with the parameter's std."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        for sub in module.modules():
            if any(True for _ in sub.parameters(recurse=False)):
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
                else:
                    with torch.no_grad():
                        for p in sub.parameters(recurse=False):
                            p.normal_(0.0, float(p.detach().std()) if p.numel() > 1 else 0.02)
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.running_mean is not None:
                sub.reset_running_stats()


@dataclass
class CascadeResult:
    """Similarity of each method's maps to the trained model's maps after each cascade step.

    Attributes:
        steps: the cumulatively randomised units, top first (step i randomises steps[: i + 1]).
        spearman / ssim: method -> list of mean similarities over images, one per step.
        per_image_spearman: method -> ``(steps, B)`` tensor.
    """

    steps: list[str]
    spearman: dict[str, list[float]]
    ssim: dict[str, list[float]]
    per_image_spearman: dict[str, Tensor]

    def passed(self, method: str, threshold: float = FAIL_SIMILARITY) -> bool:
        """A method passes when its maps decorrelate (Spearman < ``threshold``) once every unit
        is randomised."""
        return self.spearman[method][-1] < threshold


def cascading_randomization(
    model: nn.Module,
    x: Tensor,
    methods: Sequence[str],
    layer: str,
    targets: Tensor | None = None,
    max_steps: int | None = 6,
    depth: int = 2,
    seed: int = 0,
    method_options: Mapping[str, Any] | None = None,
) -> CascadeResult:
    """Run the cascading randomization test on ``x`` for ``methods`` at ``layer``.

    Args:
        model: the trained model (not modified).
        x: ``(B, 3, H, W)`` inputs.
        methods: registered method names.
        layer: the explained layer's name (kept fixed while weights change).
        targets: ``(B,)`` classes to explain (default: the trained model's top-1).
        max_steps: evaluate at most this many cascade points, spread evenly over the units from the
            top (the last point always randomises every unit); None: every unit.
        depth: unit granularity (see :func:`parameter_units`).
        seed: seeds the re-initialisation.
        method_options: passed to every :func:`camscope.explain` call.

    Cost: ``1 + steps`` calls of :func:`camscope.explain` on ``x`` (every method shares each).
    """
    from ..core.engine import explain

    names = list(methods)
    ref = explain(
        model,
        x,
        names,
        layer=layer,
        targets="top1" if targets is None else targets,
        method_options=method_options,
        strict=True,
    )
    classes = ref.targets if targets is None else targets
    units = list(reversed(parameter_units(model, x, depth)))
    if not units:
        raise UsageError("the model has no parameters to randomise")
    points = list(range(len(units)))
    if max_steps is not None and len(units) > max_steps:
        points = sorted({round(i * (len(units) - 1) / (max_steps - 1)) for i in range(max_steps)})
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    gen = torch.Generator().manual_seed(seed)
    sp: dict[str, list[float]] = {n: [] for n in names}
    ss: dict[str, list[float]] = {n: [] for n in names}
    per_image: dict[str, list[Tensor]] = {n: [] for n in names}
    done = 0
    steps = []
    for point in points:
        while done <= point:
            reinitialise(modules[units[done]], gen)
            done += 1
        steps.append(units[point])
        res = explain(
            work, x, names, layer=layer, targets=classes, method_options=method_options, strict=True
        )
        for n in names:
            a, b = ref.maps[n], res.maps[n]
            rho = spearman(a.flatten(1), b.flatten(1))
            per_image[n].append(rho)
            sp[n].append(float(rho.mean()))
            ss[n].append(float(ssim(a, b).mean()))
    return CascadeResult(
        steps=steps,
        spearman=sp,
        ssim=ss,
        per_image_spearman={n: torch.stack(v) for n, v in per_image.items()},
    )

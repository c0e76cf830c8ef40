"""Robustness of explanations: how much does a map change when the input barely does?

The input ``x`` gets ``N`` noisy copies ``x + delta_i`` (uniform noise in an L-infinity ball,
:func:`uniform_noise`); each copy is explained again for the same class and its map ``a_i`` is
compared with the map ``a`` of ``x``. Maps are ``(B, H, W)`` (camscope's normalised maps),
noisy maps ``(B, N, H, W)``.

* **Max- and average-sensitivity** (Yeh et al., "On the (In)fidelity and Sensitivity of
  Explanations", NeurIPS 2019, as Quantus defines them: ``MaxSensitivity`` /
  ``AvgSensitivity``): ``max_i`` / ``mean_i`` of ``||a - a_i||_F / ||a||_F``. Lower is better.
* **Local Lipschitz estimate** (Alvarez-Melis & Jaakkola 2018, as Quantus'
  ``LocalLipschitzEstimate``): ``max_i ||a - a_i||_2 / (||delta_i||_2 + 1e-10)``, with
  ``delta_i`` in whatever units the inputs are given (model-input units in ``evaluate``). Lower is
  better.
* **Top-15% region IoU** (:func:`top_region_iou`, used by ``camscope failures`` and
  ``camscope adversarial``): IoU of the 15% most relevant pixels of two maps, pixels without
  evidence (0) left out.
* **Top-k intersection** and **centre-of-mass shift** (Ghorbani, Abid & Zou, "Interpretation of
  Neural Networks is Fragile", AAAI 2019, Sec. 3): the share of the ``k`` most relevant pixels of
  ``a`` that stay among the ``k`` most relevant of ``a_i`` (higher is better; they used k = 1000
  of 224 x 224 pixels, 2%), and the distance in pixels between the maps' centres of mass
  ``sum_u a(u) u / sum_u a(u)`` (lower is better). Ghorbani et al. study perturbations that keep
  the predicted label, so only copies whose top-1 class is that of ``x`` count; the mean over
  them is reported (NaN when none kept it).

Sensitivity and Lipschitz use every copy (Quantus' default,
``return_nan_when_prediction_changes=False``). A map that is all zero has no defined sensitivity
or centre of mass: NaN. Pixel ranks break ties in raster order
(:func:`camscope.metrics.faithfulness.pixel_ranks`).

Example:
    >>> a = torch.tensor([[[3.0, 4.0]]]); noisy = torch.tensor([[[[3.0, 0.0]]]])
    >>> sensitivities(a, noisy)
    tensor([[0.8000]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import UsageError
from .faithfulness import pixel_ranks

#: Quantus' lower bound in its Lipschitz ratio.
LIPSCHITZ_EPS = 1e-10
#: Ghorbani et al.'s k = 1000 of 224 x 224 pixels, as a fraction of the map.
TOPK_FRACTION = 0.02
#: The "top-15% regions" compared by :func:`top_region_iou`.
TOP_REGION = 0.15

#: ``explain_fn(inputs (n, C, H, W), classes (n,)) -> ({method: (n, H, W) maps}, (n,) top-1)``.
ExplainFn = Callable[[Tensor, Tensor], tuple[dict[str, Tensor], Tensor]]


def uniform_noise(
    shape: Sequence[int], samples: int, radius: float, seeds: Sequence[int]
) -> Tensor:
    """``(B, samples, *shape)`` noise, uniform in ``[-radius, radius]``; image ``b`` draws from a
    generator seeded with ``seeds[b]``, so its noise does not depend on the batch it is in."""
    if radius < 0 or samples < 1:
        raise UsageError(f"noise radius must be >= 0 and samples >= 1; got {radius}, {samples}")
    out = torch.empty(len(seeds), samples, *shape)
    gen = torch.Generator()
    for b, seed in enumerate(seeds):
        gen.manual_seed(int(seed))
        out[b] = (torch.rand(samples, *shape, generator=gen) * 2 - 1) * radius
    return out


def _check(maps: Tensor, noisy: Tensor) -> None:
    if maps.ndim != 3 or noisy.ndim != 4 or noisy.shape[0] != maps.shape[0]:
        raise UsageError(
            f"maps must be (B, H, W) and noisy maps (B, N, H, W); got {tuple(maps.shape)} and "
            f"{tuple(noisy.shape)}"
        )


def sensitivities(maps: Tensor, noisy: Tensor) -> Tensor:
    """``||a - a_i||_F / ||a||_F`` per image and copy: ``(B, N)`` (NaN for an all-zero ``a``)."""
    _check(maps, noisy)
    a = maps.double().flatten(1)
    diff = (a[:, None] - noisy.double().flatten(2)).norm(dim=2)
    norm = a.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, diff / norm.clamp(min=1e-300), float("nan")).float()


def max_sensitivity(maps: Tensor, noisy: Tensor) -> Tensor:
    """Max-sensitivity (Yeh et al. 2019): the largest :func:`sensitivities` per image, ``(B,)``."""
    return sensitivities(maps, noisy).amax(1)


def avg_sensitivity(maps: Tensor, noisy: Tensor) -> Tensor:
    """Average-sensitivity (Yeh et al. 2019): the mean of :func:`sensitivities`, ``(B,)``."""
    return sensitivities(maps, noisy).mean(1)


def lipschitz_ratios(maps: Tensor, noisy: Tensor, deltas: Tensor) -> Tensor:
    """``||a - a_i||_2 / (||delta_i||_2 + 1e-10)``: ``(B, N)``; ``deltas`` ``(B, N, ...)``."""
    _check(maps, noisy)
    diff = (maps.double().flatten(1)[:, None] - noisy.double().flatten(2)).norm(dim=2)
    step = deltas.double().flatten(2).norm(dim=2)
    return (diff / (step + LIPSCHITZ_EPS)).float()


def local_lipschitz(maps: Tensor, noisy: Tensor, deltas: Tensor) -> Tensor:
    """Local Lipschitz estimate: the largest :func:`lipschitz_ratios` per image, ``(B,)``."""
    return lipschitz_ratios(maps, noisy, deltas).amax(1)


def top_fraction_mask(maps: Tensor, fraction: float, positive_only: bool = False) -> Tensor:
    """The ``round(fraction * H * W)`` most relevant pixels of each map ``(..., H, W)`` (ties in
    raster order) as a boolean mask of the same shape; with ``positive_only`` pixels whose value
    is not above 0 are left out (an all-zero map has an empty region)."""
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"the top fraction must be in (0, 1]; got {fraction}")
    h, w = maps.shape[-2:]
    k = max(1, round(fraction * h * w))
    ranks = pixel_ranks(maps.reshape(-1, h, w)).reshape(maps.shape)
    top = ranks < k
    return top & (maps > 0) if positive_only else top


def top_region_iou(a: Tensor, b: Tensor, fraction: float = TOP_REGION) -> Tensor:
    """IoU of the top-``fraction`` regions of two maps ``(..., H, W)``: 1 = the same pixels.

    A region holds only pixels with evidence (value above 0): the map of a class with no positive
    evidence anywhere has an empty region, which shares nothing (IoU 0, also with another empty
    region).

    Example:
        >>> a = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]]); b = torch.tensor([[[1.0, 3.0, 4.0, 2.0]]])
        >>> top_region_iou(a, b, fraction=0.5)  # {0, 1} vs {1, 2}: 1 shared of 3
        tensor([0.3333])
    """
    ma = top_fraction_mask(a, fraction, positive_only=True)
    mb = top_fraction_mask(b, fraction, positive_only=True)
    inter = (ma & mb).flatten(-2).sum(-1).float()
    union = (ma | mb).flatten(-2).sum(-1).float()
    return inter / union.clamp(min=1)


def topk_intersection(maps: Tensor, noisy: Tensor, fraction: float = TOPK_FRACTION) -> Tensor:
    """Share of ``a``'s top-k pixels among each ``a_i``'s top-k (Ghorbani et al.): ``(B, N)``."""
    _check(maps, noisy)
    top = top_fraction_mask(maps, fraction)[:, None]
    top_noisy = top_fraction_mask(noisy, fraction)
    return (top & top_noisy).flatten(2).sum(2).float() / top.flatten(2).sum(2).float()


def centre_of_mass(maps: Tensor) -> Tensor:
    """``(..., 2)`` (row, column) centre of mass in pixels (pixel centres at ``i + 0.5``); NaN for
    an all-zero map."""
    h, w = maps.shape[-2:]
    m = maps.double()
    total = m.sum((-2, -1))
    rows = torch.arange(h, dtype=torch.float64, device=maps.device) + 0.5
    cols = torch.arange(w, dtype=torch.float64, device=maps.device) + 0.5
    r = (m.sum(-1) * rows).sum(-1) / total
    c = (m.sum(-2) * cols).sum(-1) / total
    out = torch.stack([r, c], dim=-1)
    return torch.where((total > 0)[..., None], out, float("nan")).float()


def centre_shift(maps: Tensor, noisy: Tensor) -> Tensor:
    """Distance in pixels between ``a``'s and each ``a_i``'s centre of mass: ``(B, N)``."""
    _check(maps, noisy)
    return (centre_of_mass(maps)[:, None] - centre_of_mass(noisy)).norm(dim=-1)


def _kept_mean(values: Tensor, kept: Tensor) -> Tensor:
    total = torch.where(kept, values, torch.zeros_like(values)).nansum(1)
    count = (kept & ~values.isnan()).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), float("nan"))


@torch.no_grad()
def robustness_scores(
    explain_fn: ExplainFn,
    x: Tensor,
    maps: dict[str, Tensor],
    classes: Tensor,
    top1: Tensor,
    deltas: Tensor,
    batch_size: int = 8,
    topk_fraction: float = TOPK_FRACTION,
) -> dict[str, dict[str, Tensor]]:
    """Every robustness number of every method on one batch: method -> metric -> ``(B,)``.

    Args:
        explain_fn: explains a batch of inputs for the given classes (see :data:`ExplainFn`); the
            ``B * N`` noisy copies go through it ``batch_size`` at a time, all methods at once.
        x: ``(B, C, H, W)`` inputs; maps: method -> ``(B, H, W)`` maps of ``x``.
        classes: ``(B,)`` explained classes; top1: ``(B,)`` top-1 classes of ``x``.
        deltas: ``(B, N, C, H, W)`` noise added to ``x`` (same units as ``x``).

    Returns:
        ``max_sensitivity``, ``avg_sensitivity``, ``lipschitz``, ``topk_intersection`` (a fraction)
        and ``com_shift`` (pixels), plus ``kept`` (copies that kept the top-1 class) per method.
    """
    b, n = deltas.shape[:2]
    if deltas.shape[0] != x.shape[0] or deltas.shape[2:] != x.shape[1:]:
        raise UsageError(f"noise {tuple(deltas.shape)} does not fit inputs {tuple(x.shape)}")
    noisy_inputs = (x[:, None] + deltas.to(x)).flatten(0, 1)
    noisy_classes = classes.repeat_interleave(n)
    parts: dict[str, list[Tensor]] = {m: [] for m in maps}
    tops = []
    for start in range(0, b * n, batch_size):
        got, top = explain_fn(
            noisy_inputs[start : start + batch_size], noisy_classes[start : start + batch_size]
        )
        for m in maps:
            parts[m].append(got[m].float())
        tops.append(top.to(top1.device))
    kept = (torch.cat(tops).reshape(b, n) == top1[:, None]).cpu()
    out: dict[str, dict[str, Tensor]] = {}
    for m, clean in maps.items():
        noisy = torch.cat(parts[m]).reshape(b, n, *clean.shape[-2:]).cpu()
        clean = clean.float().cpu()
        out[m] = {
            "max_sensitivity": max_sensitivity(clean, noisy),
            "avg_sensitivity": avg_sensitivity(clean, noisy),
            "lipschitz": local_lipschitz(clean, noisy, deltas.cpu()),
            "topk_intersection": _kept_mean(topk_intersection(clean, noisy, topk_fraction), kept),
            "com_shift": _kept_mean(centre_shift(clean, noisy), kept),
            "kept": kept.float().mean(1),
        }
    return out


__all__ = [
    "LIPSCHITZ_EPS",
    "TOPK_FRACTION",
    "TOP_REGION",
    "ExplainFn",
    "avg_sensitivity",
    "centre_of_mass",
    "centre_shift",
    "lipschitz_ratios",
    "local_lipschitz",
    "max_sensitivity",
    "robustness_scores",
    "sensitivities",
    "top_fraction_mask",
    "top_region_iou",
    "topk_intersection",
    "uniform_noise",
]

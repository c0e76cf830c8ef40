"""Faithfulness metrics: does the map point at what the model actually uses?

Every metric takes ``forward``, a callable from a batch of model inputs ``(N, 3, H, W)`` to class
scores ``(N, classes)`` (usually the model itself under ``torch.no_grad()``), the preprocessed
inputs ``x`` ``(B, 3, H, W)``, maps ``(B, H, W)`` in [0, 1] and the explained classes ``(B,)``.
All perturbed inputs of a metric are built as one stack and scored in chunks of ``batch_size``,
so the cost is the model's own forward passes (the count is given in each docstring) plus a few
element-wise tensor operations.

"Scores" are probabilities of the explained class unless a function says otherwise, as in the
Grad-CAM++ and RISE papers: softmax, or a single-logit model's sigmoid (:func:`scores`).

Example:
    >>> p_full = class_probability(model, x, classes)  # doctest: +SKIP
    >>> p_map = class_probability(model, explanation_input(x, maps, black), classes)  # doctest: +SKIP
    >>> average_drop(p_full, p_map).mean()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.prediction import ClassHead, class_head
from ..errors import UsageError
from ..perturbation.occlusion import occlusion_drops, occlusion_grid

Forward = Callable[[Tensor], Tensor]

SUBSTRATES = ("zero", "blur", "mean", "black")


@torch.no_grad()
def scores(
    forward: Forward,
    inputs: Tensor,
    classes: Tensor,
    batch_size: int = 64,
    probability: bool = True,
    head: ClassHead | None = None,
) -> Tensor:
    """Score of ``classes[i]`` for each ``inputs[i]``, in chunks of ``batch_size`` (``N`` forwards).

    ``probability=True`` gives the class probability, otherwise the class score (the logit), both
    as :class:`camscope.core.prediction.ClassHead` reads the outputs: ``head`` when given (a
    multi-label head: a sigmoid per class), else the head the logits imply: softmax, or for a
    single-logit model class 1 = ``+z`` with ``sigmoid(z)`` and class 0 = ``-z`` with
    ``1 - sigmoid(z)``.
    """
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        logits = forward(inputs[start : start + batch_size]).float()
        if logits.ndim != 2:
            raise UsageError(
                f"faithfulness metrics need (batch, classes) scores; the model gave {tuple(logits.shape)}"
            )
        reader, ids = head or class_head(logits), classes[start : start + batch_size, None]
        out.append(reader.probabilities(logits, ids) if probability else reader.scores(logits, ids))
    return torch.cat(out)[:, 0]


def class_probability(
    forward: Forward,
    inputs: Tensor,
    classes: Tensor,
    batch_size: int = 64,
    head: ClassHead | None = None,
) -> Tensor:
    """Probability of ``classes`` ``(B,)`` for ``inputs`` ``(B, 3, H, W)`` (see :func:`scores`)."""
    return scores(forward, inputs, classes, batch_size, probability=True, head=head)


def explanation_input(x: Tensor, maps: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """The "explanation map" image of Grad-CAM++ (Eq. 22): the input multiplied by the map.

    ``baseline + map * (x - baseline)``: with ``baseline`` the model-input value of a black pixel
    this is exactly the paper's ``E = L^c ∘ I`` on the [0, 1] image followed by normalisation.
    """
    return baseline + maps[:, None] * (x - baseline)


def average_drop(p_full: Tensor, p_map: Tensor) -> Tensor:
    """Per-image Average Drop % (Chattopadhay et al., Grad-CAM++, WACV 2018, Sec. 5.1).

    ``100 * max(0, Y - O) / Y`` with ``Y`` the class probability on the image and ``O`` on the
    explanation map image. Lower is better; the paper reports the mean over images.

    Example:
        >>> average_drop(torch.tensor([0.8, 0.5]), torch.tensor([0.4, 0.6]))
        tensor([50.,  0.])
    """
    return 100.0 * (p_full - p_map).clamp(min=0) / p_full.clamp(min=1e-12)


def increase_in_confidence(p_full: Tensor, p_map: Tensor) -> Tensor:
    """Per-image "Increase in Confidence" indicator (Grad-CAM++ paper, Sec. 5.1): ``O > Y``.

    The paper's % is ``100 * mean``. Higher is better.
    """
    return p_map > p_full


#: Signed drops (percentage points of the class probability) this close to the lowest share the
#: win: identical maps whose drops differ by float rounding tie (see :func:`win_share`).
WIN_TIE_TOLERANCE = 0.01


def win_share(drops: dict[str, Tensor], tolerance: float = WIN_TIE_TOLERANCE) -> dict[str, Tensor]:
    """Per-image "Win %" (Grad-CAM++ paper, Table 1): which method has the lowest drop.

    The paper compares two methods; with several, each image's win goes to the method(s) whose
    signed drop ``100 * (Y - O) / Y`` is within ``tolerance`` points of the smallest, shared
    equally. The tolerance is ours: the same map computed by two methods (Grad-CAM and XGrad-CAM
    at a GAP layer) gives drops that differ by float rounding (1e-6 points), and an exact
    comparison would hand the whole win to whichever rounded lower; 0.01 points is far below any
    difference the column is read for. Returns method -> ``(B,)`` shares in [0, 1] whose mean
    times 100 is the Win %; the shares of all methods sum to 1 per image.

    Example:
        >>> w = win_share({"a": torch.tensor([1.0, 5.0]), "b": torch.tensor([2.0, 5.004])})
        >>> w["a"], w["b"]
        (tensor([1.0000, 0.5000]), tensor([0.0000, 0.5000]))
    """
    names = list(drops)
    stack = torch.stack([drops[n] for n in names])
    best = stack <= stack.amin(0, keepdim=True) + tolerance
    share = best.float() / best.float().sum(0, keepdim=True)
    return {n: share[i] for i, n in enumerate(names)}


def signed_drop(p_full: Tensor, p_map: Tensor) -> Tensor:
    """``100 * (Y - O) / Y``: the drop without the clamp at 0, used to rank methods for Win %."""
    return 100.0 * (p_full - p_map) / p_full.clamp(min=1e-12)


def gaussian_blur(x: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Separable Gaussian blur with reflect padding (RISE's insertion substrate: 11 px, sigma 5)."""
    half = kernel_size // 2
    t = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - half
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (half, half, half, half), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def substrate(x: Tensor, kind: str, black: Tensor | float = 0.0) -> Tensor:
    """What replaces removed pixels.

    * ``"zero"``: 0 in model-input space, i.e. the normalisation mean colour (RISE's deletion);
    * ``"blur"``: the image blurred with :func:`gaussian_blur` (RISE's insertion);
    * ``"mean"``: the image's own mean colour;
    * ``"black"``: ``black``, the model-input value of a black pixel.
    """
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "black":
        return (torch.zeros_like(x) + black).expand_as(x).clone()
    raise UsageError(f"unknown substrate {kind!r}; choose one of {', '.join(SUBSTRATES)}")


def pixel_ranks(maps: Tensor) -> Tensor:
    """Rank of every pixel, 0 = most relevant: ``(B, H, W)`` longs.

    Pixels are sorted by decreasing map value; ties keep raster order (a stable sort), so the
    ranking is deterministic.
    """
    b, h, w = maps.shape
    order = torch.sort(maps.reshape(b, -1), dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w, device=maps.device).expand(b, -1).contiguous())
    return ranks.reshape(b, h, w)


def step_counts(num_pixels: int, steps: int) -> Tensor:
    """Pixels changed after each of ``steps`` equal steps: ``round(k * N / steps)``, k = 0..steps."""
    k = torch.arange(steps + 1, dtype=torch.float64)
    return torch.round(k * num_pixels / steps).long()


@torch.no_grad()
def deletion_insertion(
    forward: Forward,
    x: Tensor,
    maps: Tensor,
    classes: Tensor,
    mode: str = "deletion",
    steps: int = 20,
    substrate_kind: str | None = None,
    black: Tensor | float = 0.0,
    batch_size: int = 64,
    head: ClassHead | None = None,
) -> Tensor:
    """Deletion or insertion curve (Petsiuk, Das & Saenko, RISE, BMVC 2018, Sec. 4.1).

    Pixels are ranked by decreasing map value (:func:`pixel_ranks`). *Deletion* starts from the
    image and replaces the top-ranked pixels by the substrate, ``round(k N / steps)`` of them at
    step ``k``; *insertion* starts from the substrate and puts the image's top-ranked pixels back.
    The curve is the class probability at each of the ``steps + 1`` points. RISE removes 224
    pixels per step of a 224 x 224 image (224 steps) with a zero substrate for deletion and a
    blurred image for insertion; these are the defaults here (``substrate_kind=None``) with fewer
    steps. Cost: ``B * (steps + 1)`` forwards.

    Returns:
        ``(B, steps + 1)`` curves; summarise with :func:`auc` (deletion: lower is better;
        insertion: higher is better).
    """
    if mode not in ("deletion", "insertion"):
        raise UsageError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    if steps < 1:
        raise UsageError(f"steps must be >= 1; got {steps}")
    kind = substrate_kind or ("zero" if mode == "deletion" else "blur")
    base = substrate(x, kind, black)
    b, _, h, w = x.shape
    ranks = pixel_ranks(maps)[:, None]  # (B, 1, H, W)
    counts = step_counts(h * w, steps).to(x.device)
    curves = torch.empty(b, steps + 1, device=x.device)
    # Build and score the perturbed images in chunks (image-major order), never all at once.
    pairs = [(i, k) for i in range(b) for k in range(steps + 1)]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        idx = torch.tensor([i for i, _ in chunk], device=x.device)
        n = counts[torch.tensor([k for _, k in chunk], device=x.device)]
        changed = ranks[idx] < n[:, None, None, None]
        if mode == "deletion":
            inputs = torch.where(changed, base[idx], x[idx])
        else:
            inputs = torch.where(changed, x[idx], base[idx])
        probs = class_probability(forward, inputs, classes[idx], batch_size, head)
        for (i, k), p in zip(chunk, probs):
            curves[i, k] = p
    return curves


def auc(curves: Tensor) -> Tensor:
    """Area under curves ``(B, S + 1)`` sampled at equal steps over [0, 1] (trapezoid rule).

    Example:
        >>> auc(torch.tensor([[1.0, 0.5, 0.0]]))
        tensor([0.5000])
    """
    s = curves.shape[1] - 1
    if s < 1:
        raise UsageError("a curve needs at least two points")
    return (curves[:, 1:] + curves[:, :-1]).sum(1) / (2 * s)


def noisy_linear_impute(
    x: Tensor, removed: Tensor, noise: float = 0.01, sweeps: int = 20, seed: int = 0
) -> Tensor:
    """Noisy linear imputation of ROAD (Rong et al., ICML 2022, Sec. 4).

    Each removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct,
    1/12 for the 4 diagonal ones), removed neighbours included, so the removed region is the
    solution of a sparse linear system with the kept pixels as boundary values; Gaussian noise of
    standard deviation ``noise`` (model-input units) is added to the imputed values.

    Deviation: ROAD solves the system exactly with a sparse solver; here it is solved
    approximately in torch: a coarse-to-fine fill (mean of the kept pixels in ever larger blocks)
    gives the start, then ``sweeps`` Jacobi sweeps. Far inside large holes the result is smoother
    than the exact solution; at the hole borders, where information could leak, it matches.

    Args:
        x: ``(B, C, H, W)``; removed: ``(B, H, W)`` booleans.
    """
    keep = (~removed)[:, None].to(x.dtype)
    filled = _coarse_fill(x, keep)
    b, c, h, w = x.shape
    # Neighbour weights that fall outside the image are dropped and the rest renormalised.
    norm = _neighbour_sum(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device))
    flat_keep = keep.expand(b, c, h, w).reshape(b * c, 1, h, w)
    flat_x = x.reshape(b * c, 1, h, w)
    filled = filled.reshape(b * c, 1, h, w)
    for _ in range(sweeps):
        filled = torch.where(flat_keep > 0.5, flat_x, _neighbour_sum(filled) / norm)
    filled = filled.reshape(b, c, h, w)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    jitter = torch.randn(x.shape, generator=gen).to(x.device) * noise
    return keep * x + (1 - keep) * (filled + jitter)


def _neighbour_sum(t: Tensor) -> Tensor:
    """Weighted sum of each pixel's 8 neighbours (1/6 direct, 1/12 diagonal; zero outside):
    the 3x3 kernel is ``(outer([1, 2, 1], [1, 2, 1]) - 4 * centre) / 12``, applied as two
    3-tap passes, several times faster on CPU than a one-channel ``conv2d``."""
    p = F.pad(t, (1, 1, 1, 1))
    rows = p[..., :, :-2] + 2 * p[..., :, 1:-1] + p[..., :, 2:]
    both = rows[..., :-2, :] + 2 * rows[..., 1:-1, :] + rows[..., 2:, :]
    return (both - 4 * t) / 12


def _coarse_fill(x: Tensor, keep: Tensor) -> Tensor:
    """Fill removed pixels with the mean of kept pixels in the smallest block that has any."""
    out = x * keep
    values, weights = x * keep, keep
    size = x.shape[-2:]
    missing = keep < 0.5
    while bool(missing.any()) and min(values.shape[-2:]) > 1:
        values = F.avg_pool2d(values, 2, ceil_mode=True)
        weights = F.avg_pool2d(weights, 2, ceil_mode=True)
        mean = values / weights.clamp(min=1e-12)
        up_mean = F.interpolate(mean, size=size, mode="nearest")
        up_w = F.interpolate(weights, size=size, mode="nearest")
        fill = missing & (up_w > 0)
        out = torch.where(fill, up_mean, out)
        missing = missing & ~fill
    if bool(missing.any()):  # nothing kept at all: the image mean of the kept pixels is undefined
        out = torch.where(missing, torch.zeros_like(out), out)
    return out


ROAD_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


@torch.no_grad()
def road(
    forward: Forward,
    x: Tensor,
    maps: Tensor,
    classes: Tensor,
    order: str = "morf",
    fractions: tuple[float, ...] = ROAD_FRACTIONS,
    noise: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    head: ClassHead | None = None,
) -> Tensor:
    """ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

    For each fraction ``f``, the ``f`` most relevant pixels (``order="morf"``, most relevant
    first) or least relevant pixels (``"lerf"``) by the map are removed and imputed with
    :func:`noisy_linear_impute`; the curve is the class probability at each fraction. MoRF: lower
    is better; LeRF: higher is better. Summaries: the mean over fractions.

    Deviation: ROAD retrains nothing and reports accuracy; we report the class probability per
    image (the explained class need not be the label). Cost: ``B * len(fractions)`` forwards.

    Returns:
        ``(B, len(fractions))`` probabilities.
    """
    if order not in ("morf", "lerf"):
        raise UsageError(f"order must be 'morf' or 'lerf'; got {order!r}")
    b, _, h, w = x.shape
    ranks = pixel_ranks(maps if order == "morf" else -maps)
    inputs = []
    for j, f in enumerate(fractions):
        if not 0.0 <= f <= 1.0:
            raise UsageError(f"ROAD fractions must lie in [0, 1]; got {f}")
        removed = ranks < round(f * h * w)
        inputs.append(noisy_linear_impute(x, removed, noise=noise, seed=seed + j))
    stack = torch.stack(inputs, dim=1).flatten(0, 1)  # (B * F, 3, H, W), image-major
    ids = classes.repeat_interleave(len(fractions))
    probs = class_probability(forward, stack, ids, batch_size, head)
    return probs.reshape(b, len(fractions))


def rank(values: Tensor) -> Tensor:
    """Ranks (1-based) along the last axis with ties given their average rank."""
    n = values.shape[-1]
    order = values.argsort(dim=-1, stable=True)
    sorted_vals = values.gather(-1, order)
    # Average ranks of tied runs: for each sorted position, first and last index of its run.
    pos = torch.arange(n, device=values.device, dtype=torch.float64).expand_as(sorted_vals)
    new_run = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_run[..., 1:] = sorted_vals[..., 1:] != sorted_vals[..., :-1]
    run_id = new_run.long().cumsum(-1) - 1
    first = torch.zeros_like(pos).scatter_reduce(-1, run_id, pos, reduce="amin", include_self=False)
    last = torch.zeros_like(pos).scatter_reduce(-1, run_id, pos, reduce="amax", include_self=False)
    avg = (first.gather(-1, run_id) + last.gather(-1, run_id)) / 2 + 1
    out = torch.empty_like(avg)
    out.scatter_(-1, order, avg)
    return out


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of ``a`` and ``b`` ``(B, N)`` along the last axis (ties averaged).

    Constant inputs have no defined correlation; they give 0.
    """
    ra, rb = rank(a.double()), rank(b.double())
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    den = torch.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    return torch.where(
        den > 0, (ra * rb).sum(-1) / den.clamp(min=1e-300), torch.zeros_like(den)
    ).float()


@torch.no_grad()
def occlusion_map(
    forward: Forward,
    x: Tensor,
    classes: Tensor,
    patch: int = 56,
    stride: int = 28,
    baseline: Tensor | float = 0.0,
    batch_size: int = 64,
    probability: bool = False,
    head: ClassHead | None = None,
) -> Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014) on a patch grid, as seed 001 / Grad-CAM Sec. 6.

    A ``patch`` x ``patch`` square of ``baseline`` slides with ``stride``; each cell of the result
    is the drop of the class score (logit by default, as the Grad-CAM paper's "CNN score") when
    that square is occluded. Cost: ``B * rows * cols`` forwards (7 x 7 = 49 for 224 px with the
    defaults), shared by every method. The passes are those of the ``occlusion`` method
    (:func:`camscope.perturbation.occlusion.occlusion_drops`).

    Returns:
        ``(B, rows, cols)`` score drops.
    """

    def score_fn(inputs: Tensor, ids: Tensor) -> Tensor:
        return scores(forward, inputs, ids[:, 0], batch_size, probability, head)[:, None]

    drops = occlusion_drops(
        score_fn, x, classes[:, None], patch, stride, baseline, batch_size=batch_size
    )
    return drops[:, 0]


def pool_to_grid(maps: Tensor, patch: int, stride: int) -> Tensor:
    """Mean of each map over the same patches as :func:`occlusion_map`: ``(B, rows, cols)``."""
    rows, cols = occlusion_grid((maps.shape[-2], maps.shape[-1]), patch, stride)
    integral = F.pad(maps.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    r = torch.tensor(rows, device=maps.device)
    c = torch.tensor(cols, device=maps.device)
    r0, r1 = r[:, None], r[:, None] + patch
    c0, c1 = c[None, :], c[None, :] + patch
    total = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]
    return (total / (patch * patch)).float()


def occlusion_spearman(
    maps: Tensor, occlusion: Tensor, patch: int = 56, stride: int = 28
) -> Tensor:
    """Rank correlation between each map (pooled to the occlusion grid) and its occlusion map.

    Seed 001 / Grad-CAM paper Sec. 6 ("faithfulness"): higher is better. Returns ``(B,)``.
    """
    pooled = pool_to_grid(maps, patch, stride)
    if pooled.shape != occlusion.shape:
        raise UsageError(
            f"occlusion grid {tuple(occlusion.shape)} does not match the map grid {tuple(pooled.shape)}; "
            "use the same patch and stride"
        )
    return spearman(pooled.flatten(1), occlusion.flatten(1))


__all__ = [
    "ROAD_FRACTIONS",
    "SUBSTRATES",
    "WIN_TIE_TOLERANCE",
    "auc",
    "average_drop",
    "class_probability",
    "deletion_insertion",
    "explanation_input",
    "gaussian_blur",
    "increase_in_confidence",
    "noisy_linear_impute",
    "occlusion_grid",
    "occlusion_map",
    "occlusion_spearman",
    "pixel_ranks",
    "pool_to_grid",
    "rank",
    "road",
    "scores",
    "signed_drop",
    "spearman",
    "step_counts",
    "substrate",
    "win_share",
]

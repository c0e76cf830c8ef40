"""Batched masked-input passes for the Score-CAM family (Ablation-CAM's are in :mod:`.ablation`).

Score-CAM and its variants need one forward pass per masked input, Ablation-CAM one pass of the
network *after* the target layer per ablated channel. This module does those passes as cheaply as
their definitions allow, and keeps the output equal to the one-pass-per-channel formulation:

* **Fewer passes.** A channel whose activation is constant (all zero included) min-max normalises
  to the empty mask, so every such channel shares one pass on the all-zero input; channels with the
  same normalised activation give the same mask and share one pass (exact float equality, found
  with ``torch.unique``). Ablating an all-zero channel changes nothing: its score drop is zero
  without a pass.
* **Batched passes** under ``torch.inference_mode()``, in chunks whose size comes from free memory
  (override with ``batch_size``). Masked inputs are built chunk by chunk, never all at once.
* **A faster model for the masked passes** (``optimize=True``, default): an eval-mode copy with
  ``channels_last`` weights, on CPU a checked, frozen TorchScript graph of it (batch-norm folded),
  made for the call and dropped at its end; a caller that explains many inputs can make one
  :class:`~camscope.perturbation.fastpath.FastForward` and pass it as ``fast_model`` to share it
  between calls (it is checked against the model, exactly, at the start of each call). It
  computes the same function up to float rounding. ``precision="bfloat16"`` trades exactness for
  speed (opt-in).
* **Ablation without the prefix.** One recording pass per image stores the outputs of the modules
  that finish before the target layer starts; the ablation passes replay them and the target layer
  returns the ablated batch, so nothing before the layer runs again (see
  :func:`camscope.perturbation.ablation.ablation_scores`).

Options come from ``explain(..., method_options={...})`` (see
:data:`camscope.perturbation.options.KNOWN_OPTIONS`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.concurrency import PassScope
from ..core.layers import preserved_modes
from ..core.targets import ClassHead
from ..errors import UsageError
from .fastpath import FastForward, Run
from .options import PassCounter, Settings

log = logging.getLogger(__name__)

# Rows per pass on CPU, measured on a 2-core CPU (one thread, EfficientNet-Lite0, CPU seconds of
# one call, the median of 3): whole-model passes (Score-CAM, occlusion) at batch 4 took
# 2.2 s / 3.1 s against 3.3 s / 3.9 s at batch 8 (with glibc's default allocator, which re-faults
# the larger activation buffers of batch 8 on every pass; with camscope.allocator's thresholds
# 2.3 s against 2.4 s); Ablation-CAM's passes through the layers after the target, whose buffers
# are small, at batch 8 0.35 s against 0.42 s at 4. Batches of 64 were 1.3-1.7x slower.
CPU_CAP_WHOLE = 4
CPU_CAP = 8
_GPU_CAP = 512


def minmax_rows(t: Tensor) -> tuple[Tensor, Tensor]:
    """Min-max normalise each row of ``(N, D)``; constant rows become zeros. Also returns the
    boolean ``(N,)`` constant-row mask."""
    low = t.amin(1, keepdim=True)
    span = t.amax(1, keepdim=True) - low
    constant = ~(span > 0).squeeze(1) | ~torch.isfinite(span).squeeze(1)
    out = torch.where(span > 0, (t - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), constant


def upsampled_masks(lowres: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """``(N, h, w)`` activations -> ``(N, 1, H, W)`` bilinearly upsampled, min-max normalised
    masks (half-pixel centres as in the Score-CAM authors' code, or ``align_corners``)."""
    up = F.interpolate(
        lowres[:, None].float(), size=size, mode="bilinear", align_corners=align_corners
    )
    flat, _ = minmax_rows(up.flatten(1))
    return flat.reshape(up.shape)


def _memory_free(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def batch_size_for(
    per_row_bytes: int, device: torch.device, limit: int, cpu_cap: int = CPU_CAP
) -> int:
    """Rows per pass: a quarter of free memory divided by the measured bytes per row, capped
    (``cpu_cap`` on CPU, where larger batches run slower per image: :data:`CPU_CAP_WHOLE` for
    passes through the whole model; 512 on GPU) and at most ``limit``."""
    cap = _GPU_CAP if device.type == "cuda" else cpu_cap
    fit = int(_memory_free(device) * 0.25) // max(per_row_bytes, 1)
    return max(1, min(cap, fit, limit))


@contextmanager
def output_bytes(model: nn.Module) -> Iterator[list[int]]:
    """Sum of the bytes of every leaf module's tensor outputs during the enclosed forward (other
    threads' forwards of the same module are not counted)."""
    total = [0]
    scope = PassScope()

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            total[0] += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(scope.hook(hook)) for m in leaves]
    try:
        with scope.active():
            yield total
    finally:
        for h in handles:
            h.remove()


class Scorer:
    """Runs batches in eval mode and returns target scores (``head``: softmax, single-logit or
    multi-label sigmoid), inside :meth:`running`.

    The passes run on the :class:`~camscope.perturbation.fastpath.FastForward` the caller passed
    as ``method_options={"fast_model": ...}`` (checked against the model at the start of the
    call), else with ``optimize=True`` (default) on a fast copy made for this call and dropped
    with it, else (``optimize=False``) on the model itself.
    """

    def __init__(
        self,
        model: nn.Module,
        settings: Settings,
        device: torch.device,
        head: ClassHead | None = None,
    ) -> None:
        owned = settings.fast_model
        if owned is not None:
            _check_fast_model(owned, model, settings)
            self.forward = owned
        else:
            self.forward = FastForward(
                model, device, optimize=settings.optimize, precision=settings.precision
            )
        self.original = model
        self.settings = settings
        self.head = head or ClassHead()
        self._run: Run | None = None

    @property
    def model(self) -> nn.Module:
        """The eager module that runs the passes (inside :meth:`running`)."""
        return self._current().module

    def _current(self) -> Run:
        if self._run is None:
            raise RuntimeError("Scorer passes run inside `with scorer.running():`")
        return self._run

    def logits(self, batch: Tensor, *, traced: bool = True) -> Tensor:
        out = self.settings.adapter(self._current()(batch, traced=traced))
        if out.ndim != 2 or out.shape[0] != batch.shape[0]:
            raise UsageError(
                f"perturbation methods need (batch, classes) scores; the model gave "
                f"{tuple(out.shape)}. Pass method_options={{'output_adapter': ...}}"
            )
        return out.float()

    def scores(self, batch: Tensor, class_ids: Tensor) -> Tensor:
        """``(n, K)`` scores of ``class_ids`` (``(n, K)``) on ``batch``."""
        return self.score_logits(self.logits(batch), class_ids)

    def score_logits(self, logits: Tensor, class_ids: Tensor) -> Tensor:
        """Probabilities (softmax, or sigmoid for single-logit and multi-label heads) in
        ``probability`` mode, target logits otherwise."""
        if self.settings.score == "probability":
            return self.head.probabilities(logits, class_ids)
        return self.head.scores(logits, class_ids)

    @contextmanager
    def running(self) -> Iterator[None]:
        """One use of the forward: the fast copy is checked against the model (or made) once."""
        with self.forward.use() as run, preserved_modes(self.original), torch.inference_mode():
            self.original.eval()
            run.module.eval()
            self._run = run
            try:
                yield
            finally:
                self._run = None


def _check_fast_model(owned: FastForward, model: nn.Module, settings: Settings) -> None:
    if owned.model is not model:
        raise UsageError(
            "method option 'fast_model' is a FastForward of another model; make it with "
            "FastForward(model, device) of the model you explain"
        )
    if not settings.optimize:
        raise UsageError("method options 'fast_model' and optimize=False contradict each other")
    if owned.precision != settings.precision:
        raise UsageError(
            f"method option 'fast_model' runs in precision {owned.precision!r} but "
            f"'precision' is {settings.precision!r}; pass the same precision to both"
        )


@dataclass
class MaskPlan:
    """Which masked inputs one image needs.

    ``bank`` holds the distinct non-empty low-resolution masks, ``index[c]`` the bank row of
    channel ``c`` (``-1`` for an empty mask: constant channel), ``selected[c]`` whether channel
    ``c`` is scored at all.
    """

    bank: Tensor
    index: Tensor


def plan_masks(acts: Tensor, selected: Tensor, dedup: bool) -> MaskPlan:
    """Distinct non-empty normalised masks of the selected channels of ``acts`` ``(C, h, w)``."""
    c, h, w = acts.shape
    norm, constant = minmax_rows(acts.reshape(c, h * w).float())
    keep = selected & ~constant
    index = torch.full((c,), -1, dtype=torch.long, device=acts.device)
    if not bool(keep.any()):
        return MaskPlan(norm[:0].reshape(0, h, w), index)
    rows = norm[keep]
    if dedup:
        bank, inverse = torch.unique(rows, dim=0, return_inverse=True)
    else:
        bank, inverse = rows, torch.arange(rows.shape[0], device=acts.device)
    index[keep] = inverse
    return MaskPlan(bank.reshape(-1, h, w), index)


def noise_rows(
    keys: Tensor, size: tuple[int, int], std: float, seed: int, device: torch.device
) -> Tensor:
    """Gaussian noise ``(n, 1, H, W)``, one independent, reproducible draw per integer key (the
    draw for a key does not depend on chunking or on which other rows are computed)."""
    gen = torch.Generator()
    out = torch.empty((keys.numel(), 1, *size))
    for i, key in enumerate(keys.tolist()):
        gen.manual_seed(seed * 1_000_003 + int(key))
        out[i, 0] = torch.randn(size, generator=gen)
    return out.to(device) * std


def masked_channel_scores(
    scorer: Scorer,
    x: Tensor,
    acts: Tensor,
    class_ids: Tensor,
    *,
    coefficients: Sequence[float] = (1.0,),
    noise_std: float = 0.0,
    seed: int = 0,
    selected: Tensor | None = None,
    desc: str = "scorecam",
) -> Tensor:
    """Mean score over ``coefficients`` of each channel's masked input: ``(B, C, K)``.

    Row ``(b, i, c)`` scores ``x[b] * (coefficients[i] * M_c + noise)`` where ``M_c`` is channel
    ``c``'s upsampled, min-max normalised activation. Without noise, empty masks share one pass
    on the zero input and duplicate masks share a pass; with noise every row is its own pass
    (noise differs per row) except unselected channels. Unselected channels score 0.
    """
    b, c = acts.shape[:2]
    size = (x.shape[-2], x.shape[-1])
    k = class_ids.shape[1]
    device = x.device
    sel = torch.ones(b, c, dtype=torch.bool, device=acts.device) if selected is None else selected
    coef = torch.tensor(list(coefficients), dtype=torch.float32, device=device)
    n = coef.numel()
    noisy = noise_std > 0
    # Row table: image, coefficient index, low-res mask (global bank index or -1 = empty), noise key.
    banks, row_img, row_coef, row_mask, row_key, plans = [], [], [], [], [], []
    offset = 0
    for img in range(b):
        if noisy:  # every selected channel is its own mask (noise breaks equality)
            norm, _ = minmax_rows(acts[img].reshape(c, -1).float())
            plan = MaskPlan(
                norm.reshape(acts[img].shape)[sel[img]],
                torch.full((c,), -1, dtype=torch.long, device=acts.device),
            )
            plan.index[sel[img]] = torch.arange(int(sel[img].sum()), device=acts.device)
            channels = sel[img].nonzero().squeeze(1)
        else:
            plan = plan_masks(acts[img], sel[img], dedup=True)
        plans.append(plan)
        banks.append(plan.bank)
        u = plan.bank.shape[0]
        ids = torch.arange(u, device=acts.device) + offset
        row_mask.append(ids.repeat(n))
        row_coef.append(torch.arange(n, device=acts.device).repeat_interleave(u))
        row_img.append(torch.full((u * n,), img, dtype=torch.long, device=acts.device))
        if noisy:
            # The noise depends on (sample, channel) only, not on the image's place in the
            # batch, so a batch gives the same maps as single images.
            keys = torch.arange(n, device=acts.device).repeat_interleave(u) * c + channels.repeat(n)
            row_key.append(keys)
        offset += u
    bank = torch.cat(banks).to(device)
    rows_img, rows_coef, rows_mask = torch.cat(row_img), torch.cat(row_coef), torch.cat(row_mask)
    keys_all = torch.cat(row_key) if noisy else None
    need_zero = any(bool(((p.index < 0) & sel[i]).any()) for i, p in enumerate(plans))
    total = rows_mask.numel() + int(need_zero)
    progress = PassCounter(total, scorer.settings.progress, desc)
    row_scores = torch.empty(rows_mask.numel(), k, device=device)
    zero_scores = torch.zeros(b, k, device=device)
    try:
        with scorer.running():
            batch = scorer.settings.batch_size
            if need_zero or batch is None:  # the zero input also measures memory per row
                with output_bytes(scorer.model) as used:  # hooks fire on the eager copy only
                    zero_logits = scorer.logits(torch.zeros_like(x[:1]), traced=False)
                zero_scores = scorer.score_logits(zero_logits.expand(b, -1), class_ids.to(device))
                progress.step(int(need_zero))
                per_row = used[0] + 3 * x[:1].numel() * x.element_size()
                batch = batch or batch_size_for(per_row, device, max(total, 1), CPU_CAP_WHOLE)
            ids_dev = class_ids.to(device)
            for start in range(0, rows_mask.numel(), batch):
                sl = slice(start, start + batch)
                masks = (
                    upsampled_masks(bank[rows_mask[sl]], size, scorer.settings.align_corners)
                    * coef[rows_coef[sl]][:, None, None, None]
                )
                if keys_all is not None:
                    masks = masks + noise_rows(keys_all[sl], size, noise_std, seed, device)
                imgs = rows_img[sl].to(device)
                inputs = x[imgs] * masks
                row_scores[sl] = scorer.scores(inputs, ids_dev[imgs])
                progress.step(inputs.shape[0])
    finally:
        progress.close()
    # Scatter back: (B, C, K), mean over coefficients.
    out = torch.zeros(b, c, k, device=device)
    start = 0
    for img, plan in enumerate(plans):
        u = plan.bank.shape[0]
        chunk = row_scores[start : start + u * n].reshape(n, u, k).mean(0)
        start += u * n
        idx = plan.index.to(device)
        has = idx >= 0
        out[img][has] = chunk[idx[has]]
        empty = (~has) & sel[img].to(device)
        out[img][empty] = zero_scores[img]
    return out


def channel_weights(scores: Tensor, selected: Tensor | None, mode: str) -> Tensor:
    """``(B, C, K)`` channel scores -> ``(B, K, C)`` weights: the scores themselves
    (``probability``) or their softmax over the selected channels (``channel-softmax``)."""
    w = scores.transpose(1, 2)
    if mode == "channel-softmax":
        if selected is not None:
            w = w.masked_fill(~selected[:, None, :].to(w.device), float("-inf"))
        w = torch.nan_to_num(w.softmax(-1), nan=0.0)
    elif selected is not None:
        w = w * selected[:, None, :].to(w)
    return w

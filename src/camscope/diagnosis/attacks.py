"""Adversarial examples in pixel space: FGSM and PGD under an L-infinity budget.

Images are ``(B, 3, H, W)`` in [0, 1]; the model's normalisation ``(x - mean) / std`` is applied
inside the attacked function, so ``eps`` is in pixel units (``2/255`` = two grey levels) and the
result is an image, clipped to [0, 1]. The loss is the cross-entropy of the logits; for a
single-logit (sigmoid) model, whose classes are 0 (negative) and 1 (positive) as in
:mod:`camscope.core.targets`, the binary cross-entropy ``-log sigmoid(+-logit)``.

* **FGSM** (Goodfellow, Shlens & Szegedy, ICLR 2015), one step:
  untargeted ``x' = clip(x + eps * sign(grad_x CE(f(x), y)))`` moves away from the class ``y``;
  targeted ``x' = clip(x - eps * sign(grad_x CE(f(x), t)))`` moves towards the class ``t``.
* **PGD** (Madry et al., ICLR 2018): ``steps`` FGSM steps of size ``step_size`` (default
  ``2.5 * eps / steps``, Madry et al.'s choice), each projected back onto the ball
  ``|x' - x|_inf <= eps`` and onto [0, 1]; ``random_start`` begins at a uniform point of the
  ball (off by default, as the Grad-CAM paper's targeted attacks).

Ours, in torch, rather than a library's: the attack must run the model with the gradients of the
input only (``torch.autograd.grad``, never parameter ``.grad``), in eval mode restored afterwards,
batched on the input's device; Captum's ``FGSM`` / ``PGD`` (the same update, same clipping order)
check it in the tests. A zero gradient leaves the pixel where it is (``sign(0) = 0``); unlike
Captum there is no threshold below which a gradient counts as zero (Captum's is 1e-6).

Example:
    >>> adv = pgd(model, images, labels, eps=2 / 255, steps=10, mean=spec.mean, std=spec.std)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.layers import preserved_modes
from ..core.targets import default_output_adapter
from ..errors import UsageError

ATTACKS = ("fgsm", "pgd")

#: ``forward(images in [0, 1]) -> (B, classes) logits``
PixelForward = Callable[[Tensor], Tensor]


def pixel_forward(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> PixelForward:
    """The model as a function of images in [0, 1]: ``logits(model((x - mean) / std))``."""

    def forward(x: Tensor) -> Tensor:
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        logits = default_output_adapter(model((x - m) / s))
        if logits.ndim != 2:
            raise UsageError(
                f"attacks need (batch, classes) model outputs; got {tuple(logits.shape)}"
            )
        return logits

    return forward


def _check(x: Tensor, labels: Tensor, eps: float) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise UsageError(f"images must be a float (B, C, H, W) tensor; got {tuple(x.shape)}")
    if labels.shape != (x.shape[0],):
        raise UsageError(f"one label per image needed; got {tuple(labels.shape)} for {x.shape[0]}")
    if not 0.0 < eps <= 1.0:
        raise UsageError(f"eps must be in (0, 1] (pixel units, e.g. 2/255); got {eps}")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise UsageError("attacks take images in [0, 1], before the model's normalisation")


def class_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Summed cross-entropy of ``labels``; a single-logit model's classes are 0 and 1 (binary
    cross-entropy of the sigmoid, the same as the cross-entropy of ``[-logit / 2, logit / 2]``)."""
    if logits.shape[1] == 1:
        if bool(((labels != 0) & (labels != 1)).any()):
            raise UsageError("a single-logit model has the classes 0 and 1 only")
        target = labels.to(logits.dtype)[:, None]
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    return F.cross_entropy(logits, labels, reduction="sum")


def gradient_sign(forward: PixelForward, x: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """``sign`` of the gradient of the summed cross-entropy w.r.t. ``x``, negated when targeted:
    the direction one FGSM step moves each pixel."""
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = class_loss(forward(leaf).float(), labels.to(x.device))
        (grad,) = torch.autograd.grad(loss, leaf)
    direction = grad.sign()
    return -direction if targeted else direction


def fgsm(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    eps: float,
    *,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    targeted: bool = False,
) -> Tensor:
    """One FGSM step of size ``eps`` away from ``labels`` (towards them when ``targeted``): the
    first step of :func:`pgd` with ``step_size=eps``, whose projection onto the ball then keeps
    every pixel where the step put it."""
    return pgd(model, x, labels, eps, 1, step_size=eps, mean=mean, std=std, targeted=targeted)


def pgd(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    eps: float,
    steps: int = 10,
    *,
    step_size: float | None = None,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    targeted: bool = False,
    random_start: bool = False,
    seed: int = 0,
) -> Tensor:
    """Projected gradient descent: ``steps`` signed-gradient steps, each projected onto the
    ``eps`` ball around ``x`` and onto [0, 1]."""
    _check(x, labels, eps)
    if steps < 1:
        raise UsageError(f"PGD needs at least one step; got {steps}")
    alpha = default_step_size(eps, steps) if step_size is None else float(step_size)
    if alpha <= 0:
        raise UsageError(f"the PGD step size must be > 0; got {alpha}")
    forward = pixel_forward(model, mean, std)
    x = x.detach()
    with preserved_modes(model):
        model.eval()
        adv = x
        if random_start:
            gen = torch.Generator().manual_seed(seed)
            start = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x) * eps
            adv = (x + start).clamp(0.0, 1.0)
        for _ in range(steps):
            adv = (adv + alpha * gradient_sign(forward, adv, labels, targeted)).clamp(0.0, 1.0)
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)
    return adv.detach()


def default_step_size(eps: float, steps: int) -> float:
    """Madry et al.'s PGD step: ``2.5 * eps / steps``."""
    return 2.5 * eps / steps


def attack(
    kind: str,
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    targeted: bool = False,
    random_start: bool = False,
    seed: int = 0,
) -> Tensor:
    """:func:`fgsm` or :func:`pgd` by name (``"fgsm"`` / ``"pgd"``)."""
    if kind == "fgsm":
        return fgsm(model, x, labels, eps, mean=mean, std=std, targeted=targeted)
    if kind == "pgd":
        return pgd(
            model,
            x,
            labels,
            eps,
            steps,
            step_size=step_size,
            mean=mean,
            std=std,
            targeted=targeted,
            random_start=random_start,
            seed=seed,
        )
    raise UsageError(f"unknown attack {kind!r}; choose {' or '.join(ATTACKS)}")


def to_8bit(x: Tensor) -> Tensor:
    """Round images in [0, 1] to the nearest of the 256 levels a PNG stores."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0

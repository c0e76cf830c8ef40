"""FullGrad.

Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization", NeurIPS 2019
(arXiv:1905.00780), Eq. 4 and Sec. 4. A ReLU network with biases is exactly the sum of its input
gradient times the input and of its bias gradients, ``f(x) = \\nabla_x f(x)^\\top x +
\\sum_{l, c} f^b_{l, c}(x)``, where ``f^b_{l,c} = \\nabla_{z_{l,c}} f \\odot b_{l,c}`` is the gradient
of the target score with respect to the output ``z`` of layer ``l`` (channel ``c``) times that
channel's bias. FullGrad's saliency map post-processes and sums every term:

.. math::
    S(x) = \\sum_{c \\in \\text{input}} \\psi\\big((\\nabla_x f \\odot x)_c\\big)
        + \\sum_{l} \\sum_{c \\in l} \\psi\\big(f^b_{l, c}(x)\\big),
    \\qquad \\psi(t) = \\mathrm{minmax}\\big(\\mathrm{Up}(|t|)\\big)

with ``Up`` the bilinear resize to the input size and ``minmax`` the rescaling of each channel's
map to [0, 1]. The layers with biases are every ``Conv2d`` with a bias and every batch-norm layer
(``_BatchNorm`` subclasses, timm's ``BatchNormAct2d`` included), whose bias in eval mode is
``\\beta - \\gamma \\mu / \\sqrt{\\sigma^2 + \\epsilon}`` (running statistics). Where a batch-norm
module also holds its activation (timm ``BatchNormAct2d``), ``z`` is the input of its first child
module that runs (the normalised values before the activation). One forward pass from the input
and one backward to the input and every such layer (``K`` targets share it through a batched
vector-Jacobian product) give every term.

Example:
    >>> explain(model, x, methods="fullgrad")  # doctest: +SKIP

Deviations: the chosen layer plays no part (the map is the same at every layer; explain at one
layer); the pass runs in eval mode (the bias of a batch-norm layer is defined by its running
statistics); batch-norm layers without running statistics and the biases of linear layers
(no spatial map) are left out, as in the authors' code. The paper does not say whether ``psi``
rescales the input term per colour channel or over all three; we rescale each channel, as
pytorch-grad-cam does (the authors' code rescales all channels together, and each bias term over
all of a layer's channels at once, where the paper's sum is per channel). We resize before
rescaling, which keeps every rescaled map in [0, 1]. Callable targets are not supported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.concurrency import PassScope
from ..core.context import LayerContext
from ..core.layers import preserved_modes
from ..core.passes import batched_grad
from ..core.registry import register_method
from ..perturbation.options import Settings, class_targets


def effective_bias(module: nn.Module) -> Tensor | None:
    """The per-channel bias a layer adds to its output, or None if it has none we use.

    ``Conv2d``: its bias. Batch norm with running statistics: ``beta - gamma mu / sqrt(var + eps)``
    (``gamma = 1, beta = 0`` without affine parameters)."""
    if isinstance(module, nn.Conv2d):
        return None if module.bias is None else module.bias.detach()
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        mean, var = module.running_mean, module.running_var
        if mean is None or var is None:
            return None
        scale = (var + module.eps).rsqrt()
        if module.weight is not None:
            scale = scale * module.weight.detach()
        shift = module.bias.detach() if module.bias is not None else torch.zeros_like(mean)
        return shift - mean * scale
    return None


class _BiasTaps:
    """Forward hooks that record the output ``z`` of every layer with a bias, as a node of the
    graph (the module's output, or the input of the first child that runs in it)."""

    def __init__(self, scope: PassScope) -> None:
        self.scope = scope
        self.outputs: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.handles: list[Any] = []

    def attach(self, model: nn.Module) -> None:
        scope = self.scope
        for module in model.modules():
            bias = effective_bias(module)
            if bias is None:
                continue
            children = list(module.children())
            if children:  # a norm that holds its activation: tap before the first child
                state = {"done": False}
                self.handles.append(
                    module.register_forward_pre_hook(scope.pre_hook(self._reset(state)))
                )
                for child in children:
                    before = self._child_input(bias, state)
                    self.handles.append(child.register_forward_pre_hook(scope.pre_hook(before)))
            else:
                after = self._output(bias)
                self.handles.append(module.register_forward_hook(scope.hook(after)))

    def _keep(self, z: Tensor, bias: Tensor) -> Tensor:
        self.outputs.append(z)
        self.biases.append(bias)
        return z.clone()  # later in-place ops (ReLU(inplace=True)) must not change z

    def _output(self, bias: Tensor) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
            if isinstance(out, Tensor) and out.ndim == 4 and out.requires_grad:
                return self._keep(out, bias)
            return None

        return hook

    @staticmethod
    def _reset(state: dict[str, bool]) -> Callable[[nn.Module, Any], None]:
        def hook(_m: nn.Module, _i: Any) -> None:
            state["done"] = False

        return hook

    def _child_input(self, bias: Tensor, state: dict[str, bool]) -> Callable[[nn.Module, Any], Any]:
        def hook(_m: nn.Module, inputs: Any) -> Any:
            if state["done"] or not inputs or not isinstance(inputs[0], Tensor):
                return None
            state["done"] = True
            z = inputs[0]
            if z.ndim != 4 or not z.requires_grad:
                return None
            return (self._keep(z, bias), *inputs[1:])

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def resize_matrix(n_in: int, n_out: int, device: torch.device) -> Tensor:
    """``(n_out, n_in)`` weights of the bilinear resize (``align_corners=False``) along one
    axis, read off ``F.interpolate`` itself: ``Up(A) = R_h A R_w^T``."""
    eye = torch.eye(n_in, device=device)[:, None, :, None]
    return F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False)[:, 0, :, 0].T


def _extreme_rows(r: Tensor) -> Tensor:
    """Rows of a resize matrix where the minimum and maximum of any resized map can be: the
    first and last output row that read each pair of input rows (between them the value is
    linear in the interpolation weight, so it peaks at an end)."""
    first = (r > 0).to(torch.uint8).argmax(1)  # the lower input row each output row reads
    change = first[1:] != first[:-1]
    keep = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    keep[0] = keep[-1] = True
    keep[1:] |= change
    keep[:-1] |= change
    return r[keep]


def rescaled_sum(terms: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, K, C, h, w)`` -> ``(B, K, H, W)``: ``sum_c minmax(Up(|t_c|))``, every channel
    resized to ``size`` (bilinear) and rescaled to [0, 1], constant channels counting 0.

    Without resizing every channel: the resize is linear and keeps constants, so
    ``sum_c (Up(a_c) - lo_c) / s_c = Up(sum_c (a_c - m_c) / s_c) - sum_c (lo_c - m_c) / s_c``
    (``m_c`` the channel's minimum, ``lo_c`` and ``s_c`` the minimum and range of ``Up(a_c)``),
    and the extremes of ``Up(a_c)`` lie on the few output rows and columns of
    :func:`_extreme_rows`. A channel whose range is below 1e-6 of its largest value counts as
    constant.
    """
    b, k, c, h, w = terms.shape
    a = terms.abs().float().reshape(b * k, c, h, w)
    m = a.amin(dim=(-2, -1), keepdim=True)
    a = a - m
    if (h, w) == size:
        low, high = a.amin(dim=(-2, -1), keepdim=True), a.amax(dim=(-2, -1), keepdim=True)
    else:
        rows = _extreme_rows(resize_matrix(h, size[0], a.device))
        cols = _extreme_rows(resize_matrix(w, size[1], a.device))
        reduced = rows @ a @ cols.T
        low = reduced.amin(dim=(-2, -1), keepdim=True)
        high = reduced.amax(dim=(-2, -1), keepdim=True)
    span = high - low
    varies = span > 1e-6 * (high + m).clamp(min=torch.finfo(torch.float32).tiny)
    inverse = torch.where(varies, 1 / span.clamp(min=1e-30), 0.0)
    summed = (a * inverse).sum(1, keepdim=True)  # (BK, 1, h, w)
    offset = (low * inverse).sum(1, keepdim=True)
    if (h, w) != size:
        summed = F.interpolate(summed, size=size, mode="bilinear", align_corners=False)
    return (summed - offset).reshape(b, k, *size)


def full_gradients(ctx: LayerContext) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One forward from the input and one batched backward: ``(B, K, 3, H, W)`` input
    gradients, the ``(B, K, C, h, w)`` gradient at every tapped layer and the layers' biases."""
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, "fullgrad")
    x = ctx.input.detach().requires_grad_()
    scope = PassScope()
    with preserved_modes(ctx.model), torch.enable_grad():
        ctx.model.eval()
        taps = _BiasTaps(scope)
        try:
            taps.attach(ctx.model)
            with scope.active():
                logits = settings.adapter(ctx.model(x))
        finally:
            taps.remove()
        scores = ctx.head.scores(logits, ids.to(logits.device))
        grads = batched_grad(scores, [x, *taps.outputs])
    return grads[0].detach(), [g.detach() for g in grads[1:]], taps.biases


@register_method(
    "fullgrad",
    needs_gradients=False,
    uses_gradients=True,
    paper="Srinivas & Fleuret, NeurIPS 2019",
    family="input gradient",
    summary="input gradient x input plus the bias gradients of every conv and batch-norm layer",
    passes=lambda q: 1 + q.targets,
    passes_text="1 + K (one forward from the input, a backward per target)",
)
def fullgrad(ctx: LayerContext) -> Tensor:
    """Input gradient x input plus every layer's bias gradients, each resized and rescaled."""
    size = (ctx.input.shape[-2], ctx.input.shape[-1])
    input_grad, layer_grads, biases = full_gradients(ctx)
    x = ctx.input.detach().to(input_grad)
    total = rescaled_sum(input_grad * x[:, None], size)
    for grad, bias in zip(layer_grads, biases):
        term = grad * bias.to(grad).view(1, 1, -1, 1, 1)
        total += rescaled_sum(term, size)
    return total

"""Tiny hand-weighted networks whose activations and gradients can be worked out on paper.

Every network takes a ``(B, 1, 4, 4)`` input; :func:`ramp` gives ``x[i, j] = 4 i + j``.

``TwoChannelConv`` (shared by the GAP and flatten nets), a 2x2 convolution without padding, so the
layer is 3x3:

* channel 0: kernel ``[[2, 0], [0, 0]]``, bias -5 -> ``P0[i, j] = 2 x[i, j] - 5 = 8 i + 2 j - 5``
* channel 1: kernel ``[[0, 0], [0, -2]]``, bias 21 -> ``P1[i, j] = 21 - 2 x[i+1, j+1] = 11 - 8 i - 2 j``

    P0 = [[-5, -3, -1], [3, 5, 7], [11, 13, 15]]      A0 = ReLU(P0) = [[0, 0, 0], [3, 5, 7], [11, 13, 15]]
    P1 = [[11, 9, 7], [3, 1, -1], [-5, -7, -9]]       A1 = ReLU(P1) = [[11, 9, 7], [3, 1, 0], [0, 0, 0]]

No pre-activation is exactly zero, so the ReLU derivative convention at 0 never matters.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Hand-derived layer values for ``ramp()`` (see the module docstring).
P0 = [[-5.0, -3.0, -1.0], [3.0, 5.0, 7.0], [11.0, 13.0, 15.0]]
P1 = [[11.0, 9.0, 7.0], [3.0, 1.0, -1.0], [-5.0, -7.0, -9.0]]
A0 = [[0.0, 0.0, 0.0], [3.0, 5.0, 7.0], [11.0, 13.0, 15.0]]  # sum 54, mean 6
A1 = [[11.0, 9.0, 7.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]  # sum 31, mean 31/9

# GAP head: logits = W @ mean(A) + b.
GAP_W = [[1.0, -1.0], [-1.0, 2.0], [0.5, 0.5]]
GAP_B = [0.0, 0.5, -1.0]

# Flatten head (class 0 and class 1), laid out like A: weight[c] = [G0 (3x3), G1 (3x3)].
FLAT_G0 = [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]]
FLAT_G1 = [[0.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, -2.0]]
FLAT_B = [0.0, 0.0]


def ramp(batch: int = 1) -> Tensor:
    """``(batch, 1, 4, 4)`` input with ``x[i, j] = 4 i + j``."""
    return torch.arange(16.0).reshape(1, 1, 4, 4).repeat(batch, 1, 1, 1)


def t(values: list) -> Tensor:
    return torch.tensor(values, dtype=torch.float32)


class TwoChannelConv(nn.Conv2d):
    def __init__(self) -> None:
        super().__init__(1, 2, kernel_size=2)
        with torch.no_grad():
            self.weight.copy_(t([[[[2.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, -2.0]]]]))
            self.bias.copy_(t([-5.0, 21.0]))


class GapNet(nn.Module):
    """conv -> ReLU -> global average pooling -> linear(2 -> 3).

    logits = [6 - 31/9, -6 + 62/9 + 0.5, (6 + 31/9) / 2 - 1] = [23/9, 25/18, 67/18]: top-1 is class
    2, then 0, then 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = TwoChannelConv()
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.fc.weight.copy_(t(GAP_W))
            self.fc.bias.copy_(t(GAP_B))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class FlatNet(nn.Module):
    """conv -> ReLU -> flatten -> linear(18 -> 2): the gradient at the ReLU output is the weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = TwoChannelConv()
        self.relu = nn.ReLU()
        self.fc = nn.Linear(18, 2)
        with torch.no_grad():
            class0 = torch.cat([t(FLAT_G0).flatten(), t(FLAT_G1).flatten()])
            self.fc.weight.copy_(torch.stack([class0, -class0]))
            self.fc.bias.copy_(t(FLAT_B))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


class TwinNet(nn.Module):
    """Like GapNet, but channel 1 is exactly twice channel 0 (an obvious first principal component).

    conv channel 0 = P0 above, channel 1 = 2 P0, so A1 = 2 A0. Head: logits = W @ mean(A) + b with
    W = [[1, -1], [-1, 1]].
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(t([[[[2.0, 0.0], [0.0, 0.0]]], [[[4.0, 0.0], [0.0, 0.0]]]]))
            self.conv.bias.copy_(t([-5.0, -10.0]))
            self.fc.weight.copy_(t([[1.0, -1.0], [-1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class GuidedNet(nn.Module):
    """1x1 conv (+1 / -1) -> ReLU module -> flatten -> linear(8 -> 1), on a 2x2 input.

    With ``x = [[-1.5, -0.5], [0.5, 1.5]]``: channel 0 = x is positive on the bottom row, channel
    1 = -x on the top row. The head weights V0 (channel 0) and V1 (channel 1) are below.
    """

    V0: ClassVar[list[list[float]]] = [[1.0, -2.0], [3.0, -4.0]]
    V1: ClassVar[list[list[float]]] = [[5.0, 6.0], [7.0, 8.0]]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 1)
        with torch.no_grad():
            self.conv.weight.copy_(t([1.0, -1.0]).reshape(2, 1, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.cat([t(self.V0).flatten(), t(self.V1).flatten()])[None])
            self.fc.bias.zero_()

    @staticmethod
    def input() -> Tensor:
        return t([[-1.5, -0.5], [0.5, 1.5]]).reshape(1, 1, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


class SmallNet(nn.Module):
    """A small random-init CNN for contract tests: conv/BN/ReLU stages, dropout, GAP + linear.

    ``features`` is the last spatial layer (it ends with a ReLU, so CAM's premise holds there).
    """

    def __init__(self, classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        )
        self.features = nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.pool(self.features(self.stem(x))).flatten(1)))


class InplaceReluNet(nn.Module):
    """torchvision-DenseNet style: ``features`` ends before a functional in-place ReLU."""

    def __init__(self, inplace: bool = True, classes: int = 4) -> None:
        super().__init__()
        self.inplace = inplace
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1)
        )
        self.fc = nn.Linear(6, classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=self.inplace)
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SideBranch(nn.Module):
    """``(B, 3, H, W)`` -> 3 scores through ``conv``; ``unused`` runs but does not reach the
    scores, ``never`` does not run at all."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.unused = nn.Conv2d(3, 4, 3)
        self.never = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        self.unused(x)  # runs, but the output does not reach the scores
        return self.fc(self.conv(x).mean(dim=(2, 3)))


# --- a one-block timm ViT with hand-set weights (tests/methods/test_vit_reference.py) ----------
# A (1, 1, 4, 4) input is cut into four 2x2 patches (row-major); the patch embedding copies a
# patch's top-left pixel into channel 0 and its top-right pixel into channel 1, so the tokens are
# the class token (1, 0) and the patches below. Norms are identities, the MLP outputs zero, the
# projection is the identity, and q_i . k_j / sqrt(2) = x_i[0] * x_j[1], v_j = (x_j[0], 0); the
# head reads the class token: logits = (out_cls[0], -out_cls[0]).
HAND_VIT_PATCHES = [(2.0, 0.0), (-1.0, math.log(2.0)), (1.0, math.log(3.0)), (0.5, math.log(2.0))]


def hand_vit() -> nn.Module:
    """The one-block ViT described above (timm ``VisionTransformer``, eval mode)."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=4,
        patch_size=2,
        in_chans=1,
        num_classes=2,
        embed_dim=2,
        depth=1,
        num_heads=1,
        mlp_ratio=1.0,
        norm_layer=nn.Identity,
    )
    with torch.no_grad():
        for p in vit.parameters():
            p.zero_()
        vit.patch_embed.proj.weight.copy_(
            t([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 1.0], [0.0, 0.0]]]])
        )
        vit.cls_token.copy_(t([[[1.0, 0.0]]]))
        attn = vit.blocks[0].attn
        root2 = math.sqrt(2.0)
        # rows: q (2), k (2), v (2)
        attn.qkv.weight.copy_(t([[root2, 0], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]]))
        attn.proj.weight.copy_(torch.eye(2))
        vit.head.weight.copy_(t([[1.0, 0.0], [-1.0, 0.0]]))
    return vit.eval()


def hand_vit_input() -> Tensor:
    """The (1, 1, 4, 4) input whose patch tokens are :data:`HAND_VIT_PATCHES` (the bottom row of
    each patch, which the embedding ignores, is 7)."""
    x = torch.full((1, 1, 4, 4), 7.0)
    for n, (a, b) in enumerate(HAND_VIT_PATCHES):
        i, j = divmod(n, 2)
        x[0, 0, 2 * i, 2 * j], x[0, 0, 2 * i, 2 * j + 1] = a, b
    return x


def random_vit(seed: int = 0, depth: int = 3, **kwargs: Any) -> nn.Module:
    """A small random timm ViT (32 px, 8 px patches: 16 patch tokens, width 16, 2 heads, 5
    classes) in eval mode; ``kwargs`` go to timm's ``VisionTransformer``."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    options: dict[str, Any] = {
        "img_size": 32,
        "patch_size": 8,
        "num_classes": 5,
        "embed_dim": 16,
        "depth": depth,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        **kwargs,
    }
    return VisionTransformer(**options).eval()


def random_torchvision_vit(seed: int = 0, depth: int = 3) -> nn.Module:
    """A small random torchvision ``VisionTransformer`` like :func:`random_vit`; its head, which
    torchvision initialises to zero, gets random weights (a zero head gives zero gradients)."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=depth,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    )
    with torch.no_grad():
        vit.heads.head.weight.normal_(0, 0.5)
        vit.heads.head.bias.normal_(0, 0.1)
    return vit.eval()


def hook_counts(model: nn.Module) -> dict[str, int]:
    """Number of hooks of every kind left on any submodule (all should be 0 after explain)."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    counts = {}
    for name, module in model.named_modules():
        for kind in kinds:
            n = len(getattr(module, kind))
            if n:
                counts[f"{name or '<root>'}.{kind}"] = n
    return counts


def model_state(model: nn.Module) -> dict[str, Any]:
    """What explaining must leave as it was: train/eval modes, ``requires_grad`` flags, ``.grad``
    (None or a tensor), parameters and buffers (BN running statistics)."""
    named = dict(model.named_parameters())
    return {
        "modes": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in named.items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in named.items()},
        "params": {n: p.detach().clone() for n, p in named.items()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
    }


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    """No hook is left and nothing of :func:`model_state` changed; gradients are on, as before."""
    assert hook_counts(model) == {}
    after = model_state(model)
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    for name, grad in before["grads"].items():
        now = after["grads"][name]
        assert now is None if grad is None else now is not None and torch.equal(now, grad), name
    for kind in ("params", "buffers"):
        for name, value in before[kind].items():
            assert torch.equal(after[kind][name], value), name
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def imagenet_sized(batch_norm: bool = False) -> nn.Module:
    """A random two-conv classifier with 1000 outputs (ImageNet's label space), 32 px inputs;
    ``batch_norm`` adds a BatchNorm with non-trivial statistics after the first convolution."""
    torch.manual_seed(0)
    norm: list[nn.Module] = [nn.BatchNorm2d(8)] if batch_norm else []
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        *norm,
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 1000),
    )
    if batch_norm:
        with torch.no_grad():
            net[1].running_mean.uniform_(-0.3, 0.3)
            net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def tiny_hf_vit(labels: list[str] | None = None, num_labels: int = 10) -> nn.Module:
    """A two-block Hugging Face ViT on 64 px inputs (16 patch tokens), random weights; ``labels``
    names the classes (and sets their number)."""
    import transformers

    named: dict[str, object] = {}
    if labels:
        named = {
            "id2label": dict(enumerate(labels)),
            "label2id": {n: i for i, n in enumerate(labels)},
        }
    config = transformers.ViTConfig(
        image_size=64,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(labels) if labels else num_labels,
        **named,
    )
    return transformers.ViTForImageClassification(config)


def hf_vit_auto_layer() -> str:
    """camscope's auto layer of :func:`tiny_hf_vit`: transformers >= 5 names the blocks
    ``vit.layers.N``, 4.x ``vit.encoder.layer.N``."""
    import transformers

    major = int(str(getattr(transformers, "__version__", "5")).split(".")[0])
    return "vit.layers.1.layernorm_before" if major >= 5 else "vit.encoder.layer.1.layernorm_before"


def dataset_classifier() -> tuple[nn.Module, Any]:
    """A small fixed-weight RGB classifier on 32 px inputs (ten named classes), built the same in
    every process: the data-set job tests load it by file path in subprocesses and Ray actors.
    ``CAMSCOPE_TEST_FORWARD_DELAY=S`` makes every forward pass sleep S seconds (a pre-hook, so the
    layer names stay the same), to kill a job while it runs."""
    import os
    import time

    from camscope.models import ModelSpec

    generator = torch.Generator().manual_seed(7)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 10),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    delay = float(os.environ.get("CAMSCOPE_TEST_FORWARD_DELAY", "0"))
    if delay > 0:
        net.register_forward_pre_hook(lambda _module, _inputs: time.sleep(delay))
    spec = ModelSpec(
        "dataset_classifier",
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=[f"class{i}" for i in range(10)],
    )
    return net.eval(), spec

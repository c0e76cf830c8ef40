"""The transformer methods against independent implementations: torchcam 0.5's LeGrad, and loops
written here on attention taken from timm's own unfused attention (a copy with
``fused_attn=False``, probabilities read where timm applies attention dropout), so that neither
the extraction nor the arithmetic is camscope's."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pytest
import torch
from nets import hook_counts, random_torchvision_vit, random_vit
from torch import Tensor, nn

from camscope import explain
from camscope.methods.vit_reciprocam import GAUSSIAN


def x32(batch: int = 2, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def pearson(a: Tensor, b: Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


class Unfused:
    """A copy of a timm ViT running timm's manual attention; records each block's attention
    probabilities (in the graph) and output tokens."""

    def __init__(self, model: nn.Module) -> None:
        self.twin = copy.deepcopy(model)
        self.probs: list[Tensor] = []
        self.tokens: list[Tensor] = []
        for block in self.twin.blocks:
            block.attn.fused_attn = False
            block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: self.probs.append(out))
            block.register_forward_hook(lambda _m, _i, out: self.tokens.append(out))

    def __call__(self, x: Tensor) -> Tensor:
        self.probs.clear()
        self.tokens.clear()
        return self.twin(x)


# --- LeGrad ----------------------------------------------------------------------------------


def torchcam_legrad(model: nn.Module, x: Tensor, classes: list[int], blocks: int = 4) -> Tensor:
    from torchcam.methods import LeGrad

    with LeGrad(model, list(model.encoder.layers)[-blocks:]) as extractor:
        scores = model(x)
        (cam,) = extractor(classes, scores, normalized=False)
    return cam.detach()


def test_legrad_agrees_with_torchcam() -> None:
    model, x = random_torchvision_vit(depth=6), x32()
    res = explain(model, x, "legrad", targets=[1, 3])
    theirs = torchcam_legrad(model, x, [1, 3])
    assert res.layer == "encoder.layers.encoder_layer_5.ln_1"
    assert res.raw["legrad"].shape == theirs.shape == (2, 4, 4)
    for i in range(2):
        assert pearson(res.raw["legrad"][i], theirs[i]) >= 0.98
    torch.testing.assert_close(res.raw["legrad"], theirs, atol=1e-6, rtol=1e-4)
    assert hook_counts(model) == {}


@pytest.mark.slow
def test_legrad_agrees_with_torchcam_on_vit_b_16() -> None:
    # torchcam's example: vit_b_16 (random weights here), the last four encoder layers
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    model = vit_b_16(weights=None).eval()
    with torch.no_grad():
        model.heads.head.weight.normal_(0, 0.02)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    res = explain(model, x, "legrad")
    theirs = torchcam_legrad(model, x, res.targets.tolist())
    assert pearson(res.raw["legrad"][0], theirs[0]) >= 0.98


def test_legrad_on_timm_equals_a_loop_on_timms_unfused_attention() -> None:
    model, x = random_vit(depth=5), x32()
    res = explain(model, x, "legrad", targets="topk:2")
    ref = Unfused(model)
    logits = ref(x)
    expected = torch.zeros(2, 2, 16)
    for b in range(2):
        for k in range(2):
            c = int(res.targets[b, k])
            layers = []
            for block in range(1, 5):  # the last four of five blocks
                tokens = ref.tokens[block]
                twin = ref.twin
                s = twin.head(twin.fc_norm(twin.norm(tokens.mean(1))))[b, c]
                (g,) = torch.autograd.grad(s, ref.probs[block], retain_graph=True)
                layers.append(g[b].clamp(min=0).mean(dim=(0, 1))[1:])  # heads, queries; patches
            expected[b, k] = torch.stack(layers).mean(0)
    torch.testing.assert_close(res.logits, logits.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.raw["legrad"].flatten(2), expected, atol=1e-7, rtol=1e-4)


# --- attention rollout -----------------------------------------------------------------------


def vit_explain_rollout(probs: list[Tensor], rows: list[int]) -> np.ndarray:
    """The rollout vit-explain's README describes, with head fusion "mean" and nothing
    discarded: a = (mean_h A + I) / 2, rows renormalised, result = a @ result from the first
    block on; the map is the class row over the patch tokens (here: the mean of ``rows``)."""
    result = np.eye(probs[0].shape[-1])
    for attention in probs:
        fused = attention.detach().double().numpy().mean(axis=0)
        a = (fused + np.eye(fused.shape[-1])) / 2
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    return result[rows].mean(axis=0)


VARIANTS = {
    "vit": ({}, [0], 1),
    "registers": ({"reg_tokens": 2}, [0], 3),
    "avg-pool": ({"global_pool": "avg", "class_token": False}, list(range(16)), 0),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rollout_equals_vit_explains_formula(variant: str) -> None:
    kwargs, rows, prefix = VARIANTS[variant]
    model, x = random_vit(depth=4, **kwargs), x32()
    res = explain(model, x, "attention-rollout", targets=[0, 2])
    ref = Unfused(model)
    with torch.no_grad():
        ref(x)
    for b in range(2):
        want = vit_explain_rollout([p[b] for p in ref.probs], rows)[prefix:].reshape(4, 4)
        torch.testing.assert_close(res.raw["attention-rollout"][b].double(), torch.tensor(want))


def test_rollout_at_an_earlier_layer_uses_the_blocks_up_to_it() -> None:
    model, x = random_vit(depth=4), x32(1)
    res = explain(model, x, "attention-rollout", layer="blocks.1.norm2")
    ref = Unfused(model)
    with torch.no_grad():
        ref(x)
    want = vit_explain_rollout([p[0] for p in ref.probs[:2]], [0])[1:].reshape(4, 4)
    torch.testing.assert_close(res.raw["attention-rollout"][0].double(), torch.tensor(want))


# --- transformer attribution (Chefer et al. 2021) --------------------------------------------


def chefer_loop(probs: list[np.ndarray], grads: list[np.ndarray]) -> np.ndarray:
    """R = I; for every block in order, R += mean_h(max(grad * A, 0)) @ R, element by element."""
    n = probs[0].shape[-1]
    relevance = np.eye(n)
    for attention, grad in zip(probs, grads):
        heads = attention.shape[0]
        cam = np.zeros((n, n))
        for h in range(heads):
            for i in range(n):
                for j in range(n):
                    cam[i, j] += max(grad[h, i, j] * attention[h, i, j], 0.0) / heads
        relevance = relevance + cam @ relevance
    return relevance


def test_transformer_attribution_equals_a_loop_on_timms_unfused_attention() -> None:
    model, x = random_vit(depth=3), x32()
    res = explain(model, x, "transformer-attribution", targets="topk:2")
    ref = Unfused(model)
    logits = ref(x)
    for b in range(2):
        for k in range(2):
            c = int(res.targets[b, k])
            grads = torch.autograd.grad(logits[b, c], ref.probs, retain_graph=True)
            relevance = chefer_loop(
                [p[b].detach().double().numpy() for p in ref.probs],
                [g[b].double().numpy() for g in grads],
            )
            want = torch.tensor(relevance[0, 1:].reshape(4, 4))
            got = res.raw["transformer-attribution"][b, k].double()
            torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)


# --- ViT-Recipro-CAM -------------------------------------------------------------------------


def recipro_loop(model: nn.Module, x: Tensor, layer: str, classes: list[int]) -> Tensor:
    """One full forward per patch position with ``layer``'s patch tokens multiplied by the 3x3
    Gaussian around it (zero-padded), the prefix tokens kept; softmax probability of each class."""
    module = model.get_submodule(layer)
    out = torch.zeros(len(classes), 4, 4)
    for i in range(4):
        for j in range(4):
            weights = torch.zeros(6, 6)
            weights[i : i + 3, j : j + 3] = GAUSSIAN
            weights = weights[1:5, 1:5].reshape(16, 1)

            def mask(_m: nn.Module, _i: Any, tokens: Tensor, w: Tensor = weights) -> Tensor:
                prefix = tokens.shape[1] - 16
                return torch.cat([tokens[:, :prefix], tokens[:, prefix:] * w], dim=1)

            handle = module.register_forward_hook(mask)
            try:
                with torch.no_grad():
                    probs = model(x).softmax(1)
            finally:
                handle.remove()
            for n, c in enumerate(classes):
                out[n, i, j] = probs[0, c]
    return out


@pytest.mark.parametrize("make", [random_vit, random_torchvision_vit])
def test_vit_reciprocam_equals_full_masked_passes(make: Any, caplog: Any) -> None:
    model, x = make(), x32()
    with caplog.at_level(logging.INFO):
        res = explain(
            model, x, "vit-reciprocam", targets="topk:2", method_options={"batch_size": 5}
        )
    assert "falling back" not in caplog.text  # only the layers after the target ran
    for b in range(2):
        want = recipro_loop(model, x[b : b + 1], str(res.layer), res.targets[b].tolist())
        torch.testing.assert_close(res.raw["vit-reciprocam"][b], want, atol=1e-6, rtol=0)

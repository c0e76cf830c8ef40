"""Agreement of Finer-CAM, Grad-CAM element-wise, KPCA-CAM, Shapley-CAM, Seg-Eigen-CAM,
Random-CAM, FEM and Sobel-CAM with the peers that have them, on real models.

Two models, one picture (scikit-image's cat, the first demo image): the offline EfficientNet-Lite0
(``camscope.load_model``, trained weights) at ``bn2``, and a random-init timm
``vit_tiny_patch16_224`` at ``blocks.11.norm1`` (the layer pytorch-grad-cam recommends), whose
patch tokens both sides lay out as a 14 x 14 map (the peer through the usual ``reshape_transform``,
camscope through its own token layout). The peers run with their defaults on their own
``copy.deepcopy`` of the model (they call ``model.eval()`` and register hooks); camscope runs
with the option that reproduces the peer where its default follows the paper instead (each
method's docstring says which). The criterion: Pearson's r >= 0.98 between the two maps after the
same ReLU and min-max. Similar methods pass that too (Eigen-CAM against Seg-Eigen-CAM, a linear
against the sigmoid kernel), so where the peer exposes its map at layer resolution
(``get_cam_image`` on the activations and gradients it captured; torchcam's output) the two must
also agree to 1e-3 there, as in ``test_agreement.py``; pytorch-grad-cam's Shapley-CAM only gives
its input-resolution map (its Hessian-vector product frees the graph), compared by r alone.

The ViT's attention runs unfused on both sides (``fused_attn = False``): the fused CPU kernel has no
second derivative, which Shapley-CAM needs. pytorch-grad-cam's ``ShapleyCAM`` cannot run at a
token layer (it keeps the activations in token layout and refuses them), so on the ViT Shapley-CAM
is checked against an independent computation of its formula with
``torch.autograd.functional`` instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget
from torch import Tensor, nn

import camscope
from camscope.data.inputs import demo_images
from camscope.io import preprocess
from camscope.methods.randomcam import random_weights

MIN_R = 0.98
LAYER_TOL = 1e-3  # max abs difference of the normalised layer-resolution maps
MODELS = ["efficientnet", "vit"]
Reshape = Callable[[Tensor], Tensor] | None


def vit_tokens_to_map(tokens: Tensor) -> Tensor:
    """pytorch-grad-cam's ViT reshape: drop the class token, 196 patch tokens -> 14 x 14."""
    return tokens[:, 1:, :].reshape(tokens.shape[0], 14, 14, tokens.shape[2]).permute(0, 3, 1, 2)


@cache
def case(key: str) -> tuple[nn.Module, Tensor, str, Reshape, int]:
    """(model, input, layer, the peer's reshape, top class)."""
    if key == "efficientnet":
        model, spec = camscope.load_model("efficientnet_lite0")
        model.eval()
        layer, reshape = "bn2", None
    else:
        import timm

        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
        for block in model.blocks:
            block.attn.fused_attn = False
        spec = camscope.load_model("efficientnet_lite0")[1]  # ImageNet normalisation, 224 px
        layer, reshape = "blocks.11.norm1", vit_tokens_to_map
    x = preprocess(demo_images()[0][1], spec)
    with torch.no_grad():
        top = int(model(x).argmax())
    return model, x, layer, reshape, top


def normalised(m: Any) -> np.ndarray:
    a = np.maximum(np.asarray(m, dtype=np.float64), 0.0)
    low = a.min(axis=(-2, -1), keepdims=True)
    span = a.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 1e-12, (a - low) / np.where(span > 1e-12, span, 1.0), 0.0)


def assert_agree(ours: Any, theirs: Any, what: str, layer_resolution: bool = True) -> None:
    a, b = normalised(ours).ravel(), normalised(theirs).ravel()
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    assert a.std() > 0 and b.std() > 0, f"{what}: a constant map"
    r = float(np.corrcoef(a, b)[0, 1])
    assert r >= MIN_R, f"{what}: Pearson r = {r:.4f} < {MIN_R}"
    if layer_resolution:
        diff = float(np.abs(a - b).max())
        assert diff < LAYER_TOL, f"{what}: max abs difference {diff:.3g} >= {LAYER_TOL}"


def ours(key: str, method: str, **options: Any) -> camscope.Explanation:
    model, x, layer, _, _ = case(key)
    return camscope.explain(model, x, method, layer=layer, method_options=options, strict=True)


@contextmanager
def peer(key: str, cls: Any, **kwargs: Any) -> Iterator[tuple[Any, nn.Module]]:
    """A pytorch-grad-cam method on a copy of the model; yields (the cam object, its layer)."""
    model, _, layer, reshape, _ = case(key)
    copied = copy.deepcopy(model)
    module = dict(copied.named_modules())[layer]
    cam = cls(copied, target_layers=[module], reshape_transform=reshape, **kwargs)
    try:
        yield cam, module
    finally:
        getattr(cam, "base_cam", cam).activations_and_grads.release()  # FinerCAM wraps a base


def top_target(key: str) -> list[ClassifierOutputTarget]:
    return [ClassifierOutputTarget(case(key)[4])]


def peer_layer_map(key: str, cls: Any, targets: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """A pytorch-grad-cam method's own map at layer resolution, before it normalises and resizes
    (``get_cam_image`` on what it captured), and the activations it captured."""
    x = case(key)[1]
    with peer(key, cls) as (cam, module):
        cam(x, targets=targets) if targets is not None else cam(x)
        base = getattr(cam, "base_cam", cam)
        acts = base.activations_and_grads.activations[0].numpy()
        grads = [g.numpy() for g in base.activations_and_grads.gradients]
        theirs = base.get_cam_image(x, module, None, acts, grads[0] if grads else None, False)
    return np.asarray(theirs), acts


@pytest.mark.parametrize("key", MODELS)
def test_gradcam_elementwise(key: str) -> None:
    theirs, _ = peer_layer_map(key, pgc.GradCAMElementWise, top_target(key))
    assert_agree(ours(key, "gradcam-elementwise").raw["gradcam-elementwise"], theirs, key)


@pytest.mark.parametrize("key", MODELS)
def test_finercam_pytorch_grad_cam(key: str) -> None:
    # the peer's defaults: top-1 target, ranks 1-3 by logit distance, alpha 1, softmax weights
    theirs, _ = peer_layer_map(key, pgc.FinerCAM)
    res = ours(key, "finercam", finer_weighting="softmax")
    assert_agree(res.raw["finercam"], theirs, key)
    with peer(key, pgc.FinerCAM) as (cam, _):
        full = cam(case(key)[1])
    assert_agree(res.maps["finercam"], full, f"{key}, input resolution", layer_resolution=False)


def test_finercam_torchcam() -> None:
    # torchcam's defaults: gamma 0.6, three references, Grad-CAM; layer-resolution maps (torchcam
    # needs a (B, C, h, w) layer, so the ViT's tokens are out of its reach)
    from torchcam.methods import FinerCAM

    model, x, layer, _, top = case("efficientnet")
    copied = copy.deepcopy(model)
    with FinerCAM(copied, layer) as extractor:
        (theirs,) = extractor(top, copied(x), normalized=False)
    res = ours("efficientnet", "finercam", finer_alpha=0.6)
    assert_agree(res.raw["finercam"], theirs.detach(), "torchcam")
    # and the paper's default alpha = 1 gives another map
    assert not torch.allclose(ours("efficientnet", "finercam").raw["finercam"], res.raw["finercam"])


def _sign_like_camscope(projection: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Flip each map so that it correlates positively with the channel sum (Eigen-CAM's rule)."""
    out = projection.copy()
    for i in range(len(out)):
        s = features[i].sum(0)
        if float(((out[i] - out[i].mean()) * (s - s.mean())).sum()) < 0:
            out[i] = -out[i]
    return out


@pytest.mark.parametrize("key", MODELS)
def test_kpcacam(key: str) -> None:
    # the peer's own layer-resolution projection (scikit-learn's KernelPCA, sigmoid kernel), with
    # camscope's sign rule applied to it (documented deviation: scikit-learn makes the largest
    # entry positive)
    theirs, acts = peer_layer_map(key, pgc.KPCA_CAM, top_target(key))
    theirs = _sign_like_camscope(theirs, acts)
    assert_agree(ours(key, "kpcacam").raw["kpcacam"], theirs, key)


@pytest.mark.parametrize("utility", ["logit", "rest"])
def test_shapleycam_pytorch_grad_cam(utility: str) -> None:
    # the peer's default target is the logit (ClassifierOutputTarget); the paper's ReST utility
    # is its ClassifierOutputReST
    key = "efficientnet"
    top = case(key)[4]
    target = ClassifierOutputTarget(top) if utility == "logit" else ClassifierOutputReST(top)
    with peer(key, pgc.ShapleyCAM) as (cam, _):
        theirs = cam(case(key)[1], targets=[target])
    res = ours(key, "shapleycam", shapley_utility=utility)
    assert_agree(res.maps["shapleycam"], theirs, f"{key}, {utility}", layer_resolution=False)


def test_shapleycam_vit_against_autograd_functional() -> None:
    # u(A) = y_c + log p_c with the layer's output replaced by A; g = du/dA, H A by
    # torch.autograd.functional.hvp; weights = spatial mean of g - H A / 2 over the patch map
    model, x, layer, reshape, top = case("vit")
    assert reshape is not None
    copied = copy.deepcopy(model)
    module = dict(copied.named_modules())[layer]
    captured: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    with torch.no_grad():
        copied(x)
    handle.remove()
    a0 = captured[0]

    def utility(a: Tensor) -> Tensor:
        swap = module.register_forward_hook(lambda _m, _i, _out: a)
        try:
            logits = copied(x)
        finally:
            swap.remove()
        return logits[0, top] + logits.log_softmax(dim=1)[0, top]

    _, g = torch.autograd.functional.vjp(utility, a0)
    _, hv = torch.autograd.functional.hvp(utility, a0, a0)
    weights = reshape(g - 0.5 * hv).mean(dim=(2, 3))
    theirs = (weights[:, :, None, None] * reshape(a0)).sum(1)
    assert_agree(ours("vit", "shapleycam").raw["shapleycam"], theirs, "vit")
    # the second-order term matters here (an attention block with a softmax follows the layer)
    assert float(hv.abs().max()) > 1e-3 * float(g.abs().max())


@pytest.mark.parametrize("key", MODELS)
def test_seg_eigencam(key: str) -> None:
    theirs, _ = peer_layer_map(key, pgc.SegEigenCAM, top_target(key))
    assert_agree(ours(key, "seg-eigencam").raw["seg-eigencam"], theirs, key)


@pytest.mark.parametrize("key", MODELS)
def test_fem_pytorch_grad_cam_form(key: str) -> None:
    theirs, _ = peer_layer_map(key, pgc.FEM, top_target(key))
    res = ours(key, "fem", fem_weighting="activations")
    assert_agree(res.raw["fem"], theirs, key)
    # the paper's form (channel means weighting binary masks) is another map
    assert not torch.allclose(ours(key, "fem").maps["fem"], res.maps["fem"])


@pytest.mark.parametrize("key", MODELS)
def test_randomcam_with_the_same_weights(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the peer draws its weights from NumPy's global state; hand it camscope's seeded draw, so
    # what is compared is everything but the draw: the weighted sum, the layer, the ReLU
    channels = 1280 if key == "efficientnet" else 192
    drawn = random_weights(channels, 3).numpy()

    def uniform(low: float, high: float, size: tuple[int, int]) -> np.ndarray:
        assert (low, high) == (-1, 1) and size[1] == channels
        return np.repeat(drawn[None], size[0], axis=0)

    monkeypatch.setattr(np.random, "uniform", uniform)
    theirs, _ = peer_layer_map(key, pgc.RandomCAM, top_target(key))
    assert_agree(ours(key, "randomcam", seed=3).raw["randomcam"], theirs, key)


def test_sobelcam_on_the_picture() -> None:
    # Sobel-CAM reads only the input: the peer's sobel_cam on the 8-bit picture against camscope's
    # on the same picture as a [0, 1] tensor and as the model's normalised input (any model)
    from PIL import Image
    from pytorch_grad_cam.sobel_cam import sobel_cam

    model, x, layer, _, _ = case("efficientnet")
    rgb = np.asarray(demo_images()[0][1].convert("RGB").resize((224, 224), Image.BILINEAR))
    theirs = sobel_cam(rgb)
    picture = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    for inputs in (picture, x):
        res = camscope.explain(model, inputs, "sobelcam", layer=layer)
        # the peer rounds to 8 bits and clips strong edges at 255: r, not equality
        assert_agree(res.raw["sobelcam"], theirs[None], "sobelcam", layer_resolution=False)

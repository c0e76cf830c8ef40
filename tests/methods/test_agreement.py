"""Agreement with independent implementations: pytorch-grad-cam (``grad-cam``) and torchcam.

Every method camscope shares with a peer is run on the same random-init torchvision model, the same
input, the same layer and the same target classes on both sides, and the maps are compared after
the same post-processing (ReLU, then min-max to [0, 1] per map). Where possible the comparison is
at layer resolution, where a wrong formula shows up as an O(1) difference, and the tolerance is
1e-3; full-resolution maps are compared more loosely because the peers resize differently.

Conventions the tests handle explicitly (each is explained where it is used):

* random-init heads give tiny logits and gradients (|g| ~ 1e-4); the peers add absolute epsilons
  (1e-6 in pytorch-grad-cam's Grad-CAM++, 1e-8 in torchcam's normalisation) that then dominate.
  The last linear layer is rescaled so that logits have a trained-like spread (the same model goes
  to both sides, so this changes nothing about the comparison, only makes the epsilons negligible).
* Eigen-CAM / Eigen-Grad-CAM: the sign of the principal component is arbitrary; pytorch-grad-cam
  keeps whatever the SVD returns, camscope picks the sign that correlates with the channel sum.
* camscope ReLUs every map (also HiResCAM's ``raw`` and the signed CAM); peers that keep signed maps
  are compared after the same ReLU.
* In-place ops after the chosen layer (torchvision DenseNet's ``F.relu(features, inplace=True)``)
  change the tensor the peers saved; camscope keeps the layer's own output.

Peers get their own ``copy.deepcopy`` of the model: they call ``model.eval()``, register hooks and
(pytorch-grad-cam's guided backprop) swap modules.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchcam.methods as torchcam_methods
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

import camscope

LAYER_TOL = 1e-3  # max abs difference of normalised maps at layer resolution
LOGIT_SPREAD = 20.0  # std of the logits after rescaling the head (trained ImageNet nets: ~5-20)

# name -> (torchvision builder, layer, input size). Layers are chosen so that no in-place op follows
# them (vgg11 features.19 is the last conv's ReLU; features.18, the conv itself, is overwritten by
# that in-place ReLU in every implementation's saved copy except ours).
CASES: dict[str, tuple[str, str, int]] = {
    "resnet18": ("resnet18", "layer4", 112),  # 4x4 at layer4
    "vgg11": ("vgg11", "features.19", 96),  # 6x6
    "densenet121": ("densenet121", "features.denseblock4", 96),  # 3x3
    "mobilenet_v3_small": ("mobilenet_v3_small", "features", 128),  # 4x4, Hardswish output
}

PGC_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
}
TORCHCAM_METHODS = {
    "gradcam": "GradCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
}
OUR_METHODS = [*PGC_METHODS, "guided-backprop", "guided-gradcam"]


def _last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@cache
def _case(name: str) -> tuple[nn.Module, Tensor, list[int]]:
    """Model (eval mode, head rescaled), input batch of two, and one target class per sample."""
    builder, _layer, size = CASES[name]
    torch.manual_seed(0)
    model = getattr(torchvision.models, builder)(weights=None)
    if name == "vgg11":
        # The 25088x4096 + 4096x4096 head is 120M parameters that every deepcopy would duplicate;
        # a slim head keeps the test light and keeps an nn.ReLU module in the classifier.
        model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
    model.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    head = _last_linear(model)
    with torch.no_grad():
        spread = model(x).std()
        head.weight.mul_(LOGIT_SPREAD / spread)
        head.bias.mul_(LOGIT_SPREAD / spread)
        logits = model(x)
    # Sample 0: its top class; sample 1: a class that is not its top one (exercises non-top
    # targets, where signed maps and ReLU placement matter).
    second = int(logits[1].argsort(descending=True)[3])
    return model, x, [int(logits[0].argmax()), second]


@cache
def _ours(name: str) -> camscope.Explanation:
    model, x, classes = _case(name)
    return camscope.explain(model, x, OUR_METHODS, layer=CASES[name][1], targets=classes)


def _peer_copy(name: str) -> tuple[nn.Module, nn.Module]:
    model = copy.deepcopy(_case(name)[0])
    return model, dict(model.named_modules())[CASES[name][1]]


def _norm(m: Any) -> np.ndarray:
    """ReLU then min-max to [0, 1] over the last two axes (constant maps -> zeros)."""
    a = np.maximum(np.asarray(m, dtype=np.float64), 0.0)
    low = a.min(axis=(-2, -1), keepdims=True)
    span = a.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 1e-12, (a - low) / np.where(span > 1e-12, span, 1.0), 0.0)


def _assert_close(ours: Any, theirs: Any, tol: float, what: str) -> None:
    diff = float(np.abs(_norm(ours) - _norm(theirs)).max())
    assert diff < tol, f"{what}: max abs difference {diff:.3g} >= {tol}"


def _xgradcam_guarded(acts: Tensor, grads: Tensor) -> Tensor:
    """XGrad-CAM on a peer's captured tensors with our documented guard for near-zero sums.

    mobilenet_v3_small's Hardswish features have channels with |sum A| ~ 1e-9 over the 4x4 map:
    the weight sum(g A) / sum(A) is then decided by each library's epsilon (torchcam 1e-8,
    pytorch-grad-cam 1e-7) and one such channel dominates the peer's map. camscope uses the exact
    ratio (a weighted mean of g when A keeps one sign) and gives weight zero only where the sum
    cancels, |sum A| <= 1e-6 sum |A|; apply that rule to the peer's own tensors.
    """
    total = acts.sum(dim=(2, 3))
    magnitude = acts.abs().sum(dim=(2, 3))
    assert float(total.abs().min()) < 1e-7  # where the peers' epsilons decide the weight
    defined = total.abs() > 1e-6 * magnitude
    weights = torch.where(defined, (grads * acts).sum(dim=(2, 3)) / total, 0.0)
    return (weights[:, :, None, None] * acts).sum(1)


def _sign_like_camscope(projection: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Flip each (h, w) projection so it correlates positively with the channel sum (our rule)."""
    out = projection.copy()
    for i in range(len(out)):
        p = out[i] - out[i].mean()
        s = features[i].sum(0)
        if float((p * (s - s.mean())).sum()) < 0:
            out[i] = -out[i]
    return out


@contextmanager
def _pgc_cam(name: str, method: str) -> Iterator[tuple[Any, nn.Module, np.ndarray]]:
    """Run a pytorch-grad-cam method; yield (the cam object, its layer, its full-size output)."""
    model, layer = _peer_copy(name)
    _, x, classes = _case(name)
    cam = getattr(pgc, PGC_METHODS[method])(model, target_layers=[layer])
    try:
        full = cam(x, targets=[ClassifierOutputTarget(c) for c in classes])
        yield cam, layer, full
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("method", list(PGC_METHODS))
@pytest.mark.parametrize("name", list(CASES))
def test_pytorch_grad_cam_layer_resolution(name: str, method: str) -> None:
    res = _ours(name)
    _, x, _ = _case(name)
    with _pgc_cam(name, method) as (cam, layer, _full):
        acts = cam.activations_and_grads.activations[0].numpy()
        grads_list = cam.activations_and_grads.gradients
        grads = grads_list[0].numpy() if grads_list else None
        # The peer's own per-layer map, before it normalises and resizes it.
        theirs = cam.get_cam_image(x, layer, None, acts, grads, False)
    if method == "gradcam++" and grads is not None:
        # pytorch-grad-cam adds 1e-6 to the alpha denominator 2g^2 + sum(A) g^3; with our rescaled
        # head g^2 ~ 1e-2 or more, so the effect stays below the tolerance. Check that assumption
        # instead of trusting it:
        assert float(np.median(grads[grads != 0] ** 2)) > 1e-5
    if method == "xgradcam" and name == "mobilenet_v3_small":
        assert grads is not None
        theirs = _xgradcam_guarded(torch.from_numpy(acts), torch.from_numpy(grads)).numpy()
    if method in ("eigencam", "eigengradcam"):
        # Documented deviation: our sign rule vs the SVD's arbitrary sign. Apply our rule to the
        # peer's projection, using the peer's own features.
        features = acts if method == "eigencam" else acts * grads
        theirs = _sign_like_camscope(theirs, features)
    _assert_close(
        res.raw[method].numpy(), theirs, LAYER_TOL, f"{method} on {name} vs pytorch-grad-cam"
    )


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigengradcam"])
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_pytorch_grad_cam_full_resolution(name: str, method: str) -> None:
    """Input-resolution maps: the peer normalises then resizes with OpenCV, we resize (bilinear,
    half-pixel centres as OpenCV) then normalise; the two differ only where the upsampled extreme
    falls between samples, so the tolerance is looser than at layer resolution."""
    res = _ours(name)
    with _pgc_cam(name, method) as (_cam, _layer, full):
        theirs = full
    ours = res.maps[method].numpy()
    assert ours.shape == theirs.shape
    diff = float(np.abs(ours - theirs).max())
    assert diff < 0.05, f"{method} on {name}: full-resolution max abs difference {diff:.3g}"
    for i in range(len(ours)):
        corr = np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1]
        assert corr > 0.999, f"{method} on {name}, sample {i}: correlation {corr:.4f}"


def _torchcam_run(name: str, cls_name: str, **kwargs: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """Signed layer-resolution map, hooked activations and gradients from a torchcam extractor."""
    model, _layer = _peer_copy(name)
    _, x, classes = _case(name)
    extractor = getattr(torchcam_methods, cls_name)(model, target_layer=CASES[name][1], **kwargs)
    with extractor:
        scores = model(x)
        # normalized=False: we apply the same ReLU + min-max to both sides (torchcam's CAM does
        # not ReLU before normalising; ours ReLUs every map).
        (cam,) = extractor(class_idx=classes, scores=scores, normalized=False)
        grads = extractor.hook_g[0]
        return cam.detach(), extractor.hook_a[0], None if grads is None else grads.detach()


@pytest.mark.parametrize("method", list(TORCHCAM_METHODS))
@pytest.mark.parametrize("name", list(CASES))
def test_torchcam_layer_resolution(name: str, method: str) -> None:
    theirs, acts, grads = _torchcam_run(name, TORCHCAM_METHODS[method])
    if method == "xgradcam" and name == "mobilenet_v3_small":
        assert grads is not None
        theirs = _xgradcam_guarded(acts, grads)
    _assert_close(_ours(name).raw[method].numpy(), theirs.numpy(), LAYER_TOL, f"{method} on {name}")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchcam_cam(name: str) -> None:
    """Plain CAM (classifier weights x features): only for GAP + single-linear heads (resnet18).

    mobilenet_v3_small has a two-layer head, which CAM does not support: camscope must refuse it
    (torchcam silently applies whichever Linear it is given).
    """
    model, x, classes = _case(name)
    if name == "mobilenet_v3_small":
        with pytest.raises(camscope.CamscopeError):
            camscope.explain(model, x, "cam", layer=CASES[name][1], targets=classes)
        return
    ours = camscope.explain(model, x, "cam", layer=CASES[name][1], targets=classes)
    theirs, _, _ = _torchcam_run(name, "CAM", fc_layer="fc")
    _assert_close(ours.raw["cam"].numpy(), theirs.numpy(), LAYER_TOL, f"CAM on {name}")


@pytest.mark.parametrize("name", list(CASES))
def test_torchcam_gradcampp_inputs(name: str) -> None:
    """Grad-CAM++ against the paper's Eq. 19 on torchcam's hooked activations and gradients.

    torchcam 0.5's GradCAMpp output itself is not a usable reference: it divides
    ``alpha[idx][mask]``, a boolean-indexed *copy*, in place, so the denominator
    ``2 g^2 + sum(A) g^3`` is never applied and its weights are ``sum g^2 ReLU(g)``. We therefore
    check our map against the formula evaluated on the tensors torchcam captured (an independent
    capture of A and dy/dA).
    """
    _, acts, grads = _torchcam_run(name, "GradCAMpp")
    assert grads is not None
    a, g = acts.double(), grads.double()
    denominator = 2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3
    alpha = torch.where(denominator != 0, g**2 / denominator.where(denominator != 0, 1.0), 0.0)
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3))
    reference = (weights[:, :, None, None] * a).sum(1)
    _assert_close(
        _ours(name).raw["gradcam++"].numpy(), reference.numpy(), LAYER_TOL, f"gradcam++ on {name}"
    )


def _pgc_guided(name: str) -> np.ndarray:
    """pytorch-grad-cam guided backprop input gradients, ``(B, 3, H, W)`` (one sample per call:
    the peer differentiates ``output[0, class]`` only), in float64 like :func:`_ours_guided`."""
    model, _ = _peer_copy(name)
    model.double()
    _, x, classes = _case(name)
    x = x.double()
    guided = pgc.GuidedBackpropReLUModel(model, device="cpu")
    out = [guided(x[i : i + 1].clone(), target_category=c) for i, c in enumerate(classes)]
    return np.stack([o.transpose(2, 0, 1) for o in out])


# mobilenet_v3_small is left out on purpose: its Hardswish (and SE-block) activations are gated by
# camscope (documented: every activation module gets the positive-gradient rule) but not by
# pytorch-grad-cam, which swaps nn.ReLU modules only. DenseNet's functional ReLU after norm5 is
# left alone by both.
GUIDED_CASES = ["resnet18", "vgg11", "densenet121"]


def _ours_guided(name: str) -> np.ndarray:
    """Our guided gradients on a float64 copy of the model: input gradients of a deep random-init
    net summed in float32 differ by up to ~5e-4 of the peak between batched and single-sample
    passes (CPU kernel choice), which would hide nothing but fail a 1e-4 comparison."""
    model, x, classes = _case(name)
    double = copy.deepcopy(model).double()
    result = camscope.explain(
        double, x.double(), "guided-backprop", layer=CASES[name][1], targets=classes
    )
    return result.raw["guided-backprop"].numpy()


@pytest.mark.parametrize("name", GUIDED_CASES)
def test_guided_backprop_raw_gradients(name: str) -> None:
    ours = _ours_guided(name)
    theirs = _pgc_guided(name)
    assert ours.shape == theirs.shape
    scale = float(np.abs(theirs).max())
    assert scale > 0
    diff = float(np.abs(ours - theirs).max()) / scale
    assert diff < 1e-4, f"guided backprop on {name}: max abs difference {diff:.3g} of the peak"


@pytest.mark.parametrize("name", GUIDED_CASES)
def test_guided_gradcam_composed_from_peer(name: str) -> None:
    """Guided Grad-CAM = guided gradients x upsampled, normalised Grad-CAM (Selvaraju et al. 2017);
    the peer's version is composed from its guided gradients and its full-size Grad-CAM map."""
    with _pgc_cam(name, "gradcam") as (_cam, _layer, full):
        coarse = full
    theirs = _pgc_guided(name) * coarse[:, None]
    ours = _ours(name).raw["guided-gradcam"].numpy()
    scale = float(np.abs(theirs).max())
    diff = float(np.abs(ours - theirs).max()) / scale
    # The coarse maps differ by the resize order (see the full-resolution test), hence 5e-2.
    assert diff < 5e-2, f"guided Grad-CAM on {name}: max abs difference {diff:.3g} of the peak"
    for i in range(len(ours)):
        corr = np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1]
        assert corr > 0.999, f"guided Grad-CAM on {name}, sample {i}: correlation {corr:.4f}"


def test_densenet_inplace_relu_after_features() -> None:
    """DenseNet's ``features`` is followed by ``F.relu(..., inplace=True)``. Both peers save the
    layer output by reference, so the in-place ReLU silently turns their saved activations into
    post-ReLU ones; camscope keeps the layer's true (pre-ReLU) output. Giving the peer a hook that
    hands the model a copy (so the in-place op hits the copy) must make the two agree again."""
    name = "densenet121"
    model, x, classes = _case(name)
    ours = camscope.explain(model, x, ["gradcam", "xgradcam"], layer="features", targets=classes)
    for method, cls_name in (("gradcam", "GradCAM"), ("xgradcam", "XGradCAM")):
        peer = copy.deepcopy(model)
        cam = getattr(pgc, cls_name)(peer, target_layers=[peer.features])
        # Registered after the peer's hooks: they see the original tensor, the model the copy.
        handle = peer.features.register_forward_hook(lambda _m, _i, out: out.clone())
        try:
            cam(x, targets=[ClassifierOutputTarget(c) for c in classes])
            acts = cam.activations_and_grads.activations[0].numpy()
            grads = cam.activations_and_grads.gradients[0].numpy()
            theirs = cam.get_cam_image(x, peer.features, None, acts, grads, False)
        finally:
            handle.remove()
            cam.activations_and_grads.release()
        assert float(acts.min()) < 0, "the peer should now see the pre-ReLU norm5 output"
        _assert_close(ours.raw[method].numpy(), theirs, LAYER_TOL, f"{method} at densenet features")


def test_peers_do_not_touch_our_model() -> None:
    """The peers ran on copies: our model has no hooks left and is still in eval mode."""
    for name in CASES:
        model = _case(name)[0]
        for module in model.modules():
            assert not module._forward_hooks, f"{name}: a hook was left on {type(module).__name__}"
            assert not module.training
        assert all(p.grad is None for p in model.parameters())

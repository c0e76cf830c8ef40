"""The contract of tests/core/test_contract.py for the transformer-only methods (registered with
``models="transformer"``), kept on small random ViTs: shapes, range, batching, top-k, dtypes,
smoothing, threads, costs, clear refusals, and no side effects on the model."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from nets import (
    SmallNet,
    assert_unchanged,
    hook_counts,
    model_state,
    random_torchvision_vit,
    random_vit,
)
from torch import Tensor, nn

from camscope import explain, get_method, list_methods
from camscope.errors import LayerError, TargetError, UnsupportedModelError, UsageError
from camscope.methods import estimate_passes

METHODS = [m for m in list_methods() if get_method(m).models == "transformer"]
ATTENTION = ["legrad", "attention-rollout", "transformer-attribution"]


def x32(batch: int = 2, seed: int = 3) -> Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def check_maps(maps: Tensor, shape: tuple[int, ...]) -> None:
    assert maps.shape == shape and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


def test_the_registry_says_which_methods_need_a_transformer() -> None:
    assert sorted(METHODS) == sorted([*ATTENTION, "vit-reciprocam"])
    assert not get_method("attention-rollout").class_specific
    assert get_method("legrad").uses_gradients and not get_method("legrad").needs_gradients
    assert get_method("gradcam").models == "any"


@pytest.fixture(scope="module")
def vit_runs() -> dict[str, Any]:
    model, x = random_vit(), x32()
    return {
        "model": model,
        "batch": explain(model, x, METHODS, targets=[3, 1]),
        "singles": [explain(model, x[i : i + 1], METHODS, targets=[[3, 1][i]]) for i in range(2)],
        "topk": explain(model, x, METHODS, targets="topk:3"),
    }


@pytest.mark.parametrize("method", METHODS)
def test_shapes_range_batching_and_top_k(method: str, vit_runs: dict[str, Any]) -> None:
    batch, topk = vit_runs["batch"], vit_runs["topk"]
    assert batch.layer == "blocks.2.norm1" and not batch.skipped
    check_maps(batch.maps[method], (2, 32, 32))
    check_maps(topk.maps[method], (2, 3, 32, 32))
    assert batch.raw[method].shape == (2, 4, 4)
    for i, single in enumerate(vit_runs["singles"]):
        torch.testing.assert_close(single.maps[method][0], batch.maps[method][i], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            single.raw[method][0], batch.raw[method][i], atol=1e-6, rtol=1e-4
        )
    for j in range(3):  # top-k column j is the map of that class alone
        one = explain(vit_runs["model"], x32(), method, targets=topk.targets[:, j].tolist())
        torch.testing.assert_close(topk.raw[method][:, j], one.raw[method], atol=1e-6, rtol=1e-4)
    assert hook_counts(vit_runs["model"]) == {}


def test_class_specific_methods_differ_between_classes(vit_runs: dict[str, Any]) -> None:
    raw = vit_runs["topk"].raw
    for method in ["legrad", "transformer-attribution", "vit-reciprocam"]:
        assert not torch.allclose(raw[method][:, 0], raw[method][:, 1])
    assert torch.equal(raw["attention-rollout"][:, 0], raw["attention-rollout"][:, 1])


def _mixed_state(model: nn.Module) -> dict[str, Any]:
    model.train()
    model.blocks[0].eval()
    model.patch_embed.requires_grad_(False)
    model.head.weight.grad = torch.full_like(model.head.weight, 0.25)
    return model_state(model)


@pytest.mark.parametrize("method", METHODS)
def test_no_side_effects_after_success_and_after_an_error(method: str) -> None:
    model = random_vit(attn_drop_rate=0.5, drop_rate=0.5)  # train mode would be random
    before = _mixed_state(model)
    reference = explain(random_vit(), x32(), method, targets=[1, 3])
    res = explain(model, x32(), method, targets=[1, 3])
    torch.testing.assert_close(res.maps[method], reference.maps[method], atol=1e-5, rtol=0)
    assert_unchanged(model, before)
    as_is = explain(model, x32(), method, targets=[1, 3], mode="as-is")  # own passes: eval
    check_maps(as_is.maps[method], (2, 32, 32))
    assert_unchanged(model, before)
    with pytest.raises(TargetError, match="out of range"):
        explain(model, x32(), method, targets=[1, 99])
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", METHODS)
def test_no_grad_inference_mode_and_dtypes(method: str) -> None:
    model, x = random_vit(), x32()
    reference = explain(model, x, method, targets=[2, 0])
    with torch.no_grad():
        inside = explain(model, x, method, targets=[2, 0]).maps[method]
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(inside, reference.maps[method], atol=1e-6, rtol=0)
    with torch.inference_mode(), pytest.raises(UsageError, match="inference_mode"):
        explain(model, x, method)
    # raw maps compared: min-max normalisation magnifies rounding where a map barely varies
    # (ViT-Recipro-CAM's probabilities on a random ViT differ by ~1e-4 between positions)
    raw = reference.raw[method]
    double = explain(random_vit().double(), x.double(), method, targets=[2, 0])
    check_maps(double.maps[method], (2, 32, 32))
    assert double.raw[method].dtype == torch.float32
    torch.testing.assert_close(double.raw[method], raw, atol=1e-6, rtol=1e-4)
    half = explain(random_vit().bfloat16(), x.bfloat16(), method, targets=[2, 0])
    check_maps(half.maps[method], (2, 32, 32))
    assert float((half.raw[method] - raw).abs().mean()) < 0.05 * float(raw.abs().max())


@pytest.mark.parametrize("method", METHODS)
def test_torchvision_distilled_deit_and_smoothing(method: str) -> None:
    from timm.models.deit import VisionTransformerDistilled

    res = explain(random_torchvision_vit(), x32(), method, targets=[0, 4])
    check_maps(res.maps[method], (2, 32, 32))
    assert res.layer == "encoder.layers.encoder_layer_2.ln_1"
    torch.manual_seed(0)
    deit = VisionTransformerDistilled(
        img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2, num_heads=2
    ).eval()
    check_maps(explain(deit, x32(), method, targets=[0, 4]).maps[method], (2, 32, 32))
    # aug_smooth rescales the input by 1.125 and 0.875: 72 and 56 px, whole 8 px patches
    dynamic = random_vit(img_size=64, dynamic_img_size=True)
    x64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for smooth in ({"aug_smooth": True}, {"eigen_smooth": True}):
        check_maps(explain(dynamic, x64, method, **smooth).maps[method], (1, 64, 64))
    assert hook_counts(dynamic) == {}


@pytest.mark.parametrize("method", METHODS)
def test_a_cnn_is_refused_with_the_reason(method: str) -> None:
    net, x = SmallNet().eval(), torch.randn(1, 3, 16, 16)
    res = explain(net, x, ["gradcam", method], layer="features")
    why = "not a vision transformer" if method in ATTENTION else "masks the patch tokens"
    assert why in res.skipped[method] and "gradcam" in res.maps
    kind = UnsupportedModelError if method in ATTENTION else UsageError
    with pytest.raises(kind, match=why):
        explain(net, x, method, layer="features", strict=True)
    assert hook_counts(net) == {}


def test_layers_outside_the_blocks_are_clear_errors() -> None:
    model, x = random_vit(), x32(1)
    for method in ATTENTION:
        with pytest.raises(LayerError, match=r"in no transformer block.*'blocks.2'"):
            explain(model, x, method, layer="patch_embed.proj", strict=True)
    with pytest.raises(UsageError, match=r"outputs shape \(1, 16, 4, 4\)"):
        explain(model, x, "vit-reciprocam", layer="patch_embed.proj", strict=True)


def test_callable_targets() -> None:
    model, x = random_vit(), x32()
    res = explain(model, x, METHODS, targets=lambda out: out[:, 1] - out[:, 0])
    assert set(res.maps) == {"attention-rollout"}  # not class-specific: no class needed
    for method in ["legrad", "transformer-attribution", "vit-reciprocam"]:
        assert "callable target" in res.skipped[method]


def test_costs() -> None:
    model, x = random_vit(), x32(1)
    passes = estimate_passes(model, x, METHODS, targets=2)
    assert passes == {
        "legrad": 3,
        "attention-rollout": 1,
        "transformer-attribution": 3,
        "vit-reciprocam": 17,  # 16 patch tokens + the recording pass
    }


def test_threads_give_the_sequential_maps_and_leave_plain_forwards_alone() -> None:
    # Equality is exact, so the BLAS behind torch must run one thread: a library that raised
    # its thread count earlier in the process (UMAP's numba run in the embeddings tests did)
    # makes a plain forward differ from itself in the last bits, with or without camscope.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        _threads_give_the_sequential_maps()


def _threads_give_the_sequential_maps() -> None:
    model = random_vit()
    inputs = [x32(1, seed) for seed in range(3)]
    expected = [explain(model, x, METHODS, targets=1).maps for x in inputs]
    with torch.no_grad():
        plain = model(inputs[0])
    bad: list[str] = []
    start = threading.Barrier(3)

    def explainer(offset: int) -> None:
        start.wait()
        for n in range(6):
            i = (n + offset) % 3
            maps = explain(model, inputs[i], METHODS, targets=1).maps
            for m in METHODS:
                if not torch.allclose(maps[m], expected[i][m], atol=1e-6):
                    diff = float((maps[m] - expected[i][m]).abs().max())
                    bad.append(f"map {m} of input {i}: max difference {diff:.3g}")

    def predictor() -> None:
        start.wait()
        for _ in range(40):
            with torch.no_grad():
                out = model(inputs[0])
            if out.requires_grad or not torch.equal(out, plain):
                diff = float((out - plain).abs().max())
                bad.append(f"plain forward: requires_grad {out.requires_grad}, max diff {diff:.3g}")

    threads = [
        threading.Thread(target=explainer, args=(0,)),
        threading.Thread(target=explainer, args=(1,)),
        threading.Thread(target=predictor),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    assert hook_counts(model) == {}


@pytest.mark.parametrize("method", ATTENTION)
def test_an_error_in_the_methods_own_pass_leaves_nothing_behind(method: str) -> None:
    model = random_vit()
    before = _mixed_state(model)
    # the user's own hook changes what an attention module returns: camscope cannot reproduce
    # it, refuses the model in the middle of its pass, and must still clean up
    handle = model.blocks[1].attn.register_forward_hook(lambda _m, _i, out: out + 1.0)
    with pytest.raises(UnsupportedModelError, match="could not be reproduced"):
        explain(model, x32(), method, targets=[0, 1], strict=True)
    assert "could not be reproduced" in explain(model, x32(), [method, "gradcam"]).skipped[method]
    handle.remove()
    assert_unchanged(model, before)
    assert torch.is_grad_enabled()

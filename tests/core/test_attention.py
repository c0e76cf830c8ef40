"""Attention probabilities recomputed in the graph (camscope.core.attention): equal to the
models' own unfused attention, differentiable, refused where unknown, and without side effects
(hooks, modes, flags, gradients; a plain forward in another thread)."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
import torch
from nets import SmallNet, hook_counts, random_torchvision_vit, random_vit, tiny_hf_vit
from torch import Tensor, nn

from camscope.core.attention import head_logits, record_attention, transformer_layout
from camscope.errors import UnsupportedModelError


def x32(batch: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def unfused_reference(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """timm's own manual attention on a copy (``fused_attn=False``), probabilities taken where
    timm applies attention dropout to them: an extraction path independent of camscope's."""
    twin = copy.deepcopy(model)
    probs: list[Tensor] = []
    for block in twin.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: probs.append(out))
    return twin(x), probs


def test_timm_probabilities_and_gradients_equal_timms_unfused_attention() -> None:
    model, x = random_vit(), x32()
    layout = transformer_layout(model)
    run = record_attention(model, x, layout, range(3), grad=True)
    out, probs = unfused_reference(model, x)
    torch.testing.assert_close(run.output, out, atol=1e-5, rtol=0)
    for i in range(3):
        assert run.probs[i].shape == (2, 2, 17, 17)
        torch.testing.assert_close(run.probs[i], probs[i], atol=1e-6, rtol=0)
    # the graph through the recomputed attention gives timm's own gradients
    mine = torch.autograd.grad(run.output[:, 3].sum(), [run.probs[i] for i in range(3)])
    theirs = torch.autograd.grad(out[:, 3].sum(), probs)
    for a, b in zip(mine, theirs):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert hook_counts(model) == {}


def test_torchvision_probabilities_equal_need_weights() -> None:
    model, x = random_torchvision_vit(), x32()
    inputs: list[Tensor] = []
    handles = [
        layer.self_attention.register_forward_pre_hook(lambda _m, a: inputs.append(a[0]))
        for layer in model.encoder.layers
    ]
    with torch.no_grad():
        plain = model(x)
    for h in handles:
        h.remove()
    run = record_attention(model, x, transformer_layout(model), range(3), grad=False)
    torch.testing.assert_close(run.output, plain, atol=1e-6, rtol=0)
    for i, layer in enumerate(model.encoder.layers):
        with torch.no_grad():
            _, weights = layer.self_attention(
                inputs[i], inputs[i], inputs[i], need_weights=True, average_attn_weights=False
            )
        torch.testing.assert_close(run.probs[i], weights, atol=1e-6, rtol=0)
        assert not run.probs[i].requires_grad


def test_frozen_parameters_still_give_the_gradients() -> None:
    model, x = random_vit(), x32(1)
    layout = transformer_layout(model)
    run = record_attention(model, x, layout, range(3), grad=True)
    want = torch.autograd.grad(run.output[:, 0].sum(), [run.probs[i] for i in range(3)])
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = record_attention(model, x, layout, range(3), grad=True)
    assert all(frozen.probs[i].requires_grad for i in range(3))
    got = torch.autograd.grad(frozen.output[:, 0].sum(), [frozen.probs[i] for i in range(3)])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "prefix", "readout"),
    [
        ({}, 1, (0,)),
        ({"reg_tokens": 4}, 5, (0,)),
        ({"global_pool": "avg", "class_token": False}, 0, ()),
    ],
)
def test_timm_layouts(kwargs: dict[str, Any], prefix: int, readout: tuple[int, ...]) -> None:
    layout = transformer_layout(random_vit(depth=2, **kwargs))
    assert layout.kind == "timm" and layout.blocks == ("blocks.0", "blocks.1")
    assert layout.attentions == ("blocks.0.attn", "blocks.1.attn")
    assert (layout.prefix, layout.readout) == (prefix, readout)
    assert layout.block_of("blocks.1.norm1") == 1 and layout.block_of("blocks.1") == 1
    assert layout.block_of("blocks.10.norm1") is None and layout.block_of("norm") is None


def test_distilled_deit_layout_and_head() -> None:
    from timm.models.deit import VisionTransformerDistilled

    torch.manual_seed(0)
    deit = VisionTransformerDistilled(
        img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2, num_heads=2
    ).eval()
    layout = transformer_layout(deit)
    assert (layout.prefix, layout.readout) == (2, (0, 1))
    check_head(deit, x32())


def check_head(model: nn.Module, x: Tensor) -> None:
    layout = transformer_layout(model)
    last = len(layout.blocks) - 1
    run = record_attention(model, x, layout, [last], grad=False, block_tokens=lambda z: z)
    torch.testing.assert_close(run.logits[last], run.output, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [random_vit, random_torchvision_vit])
def test_head_logits_of_the_last_block_are_the_models_output(make: Any) -> None:
    model = make()
    check_head(model, x32())
    with torch.no_grad():
        tokens = torch.randn(2, 17, 16)
        assert head_logits(model, transformer_layout(model), tokens).shape == (2, 5)


def test_unknown_models_are_refused_with_the_reason() -> None:
    import timm
    from timm.models.eva import Eva

    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=56, embed_dim=16, depths=(1,)
    )
    with pytest.raises(UnsupportedModelError, match="windowed attention"):
        transformer_layout(swin)
    eva = Eva(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(UnsupportedModelError, match=r"EvaAttention.*vit_b_16"):
        transformer_layout(eva)
    with pytest.raises(UnsupportedModelError, match="no transformer blocks"):
        transformer_layout(SmallNet())
    with pytest.raises(UnsupportedModelError, match="does not know its attention modules"):
        transformer_layout(tiny_hf_vit())


def test_an_attention_that_computes_something_else_is_refused_and_leaves_nothing() -> None:
    model, x = random_vit().train(), x32(1)
    model.blocks[1].attn.register_forward_hook(lambda _m, _i, out: out * 1.5)  # the user's own
    modes = {n: m.training for n, m in model.named_modules()}
    with pytest.raises(UnsupportedModelError, match=r"'blocks.1.attn'.*could not be reproduced"):
        record_attention(model, x, transformer_layout(model), range(3), grad=True)
    assert hook_counts(model) == {"blocks.1.attn._forward_hooks": 1}  # only the user's
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert torch.is_grad_enabled()


def test_no_side_effects_on_the_model() -> None:
    model, x = random_vit(), x32()
    model.train()
    model.blocks[0].eval()
    model.patch_embed.proj.weight.requires_grad_(False)
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    run = record_attention(model, x, transformer_layout(model), range(3), grad=True)
    torch.autograd.grad(run.output.sum(), [run.probs[0]])
    assert hook_counts(model) == {}
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert torch.equal(model.head.weight.grad, torch.full_like(model.head.weight, 0.5))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")


def test_a_plain_forward_in_another_thread_is_untouched() -> None:
    model, x = random_vit(), x32()
    layout = transformer_layout(model)
    with torch.no_grad():
        plain = model(x)
    bad: list[str] = []
    start = threading.Barrier(2)

    def recorder() -> None:
        start.wait()
        for _ in range(15):
            run = record_attention(model, x, layout, range(3), grad=True)
            if len(run.probs) != 3:
                bad.append("probs")

    def predictor() -> None:
        start.wait()
        for _ in range(60):
            with torch.no_grad():
                out = model(x)
            if out.requires_grad or not torch.equal(out, plain):
                bad.append("forward")

    threads = [threading.Thread(target=recorder), threading.Thread(target=predictor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    assert hook_counts(model) == {}

"""Token and channels-last outputs are laid out as (B, C, h, w) from the model's own facts."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision.models as tvm
from torch import Tensor, nn

import camscope
from camscope.core.reshape import TokenFacts, layout_of, spatial_reshape, token_facts, token_grid
from camscope.errors import LayerError


def _numbered_tokens(batch: int, prefix: int, h: int, w: int, c: int) -> Tensor:
    """Tokens whose value encodes where they belong: patch (i, j), channel k -> 1000 i + 100 j + k;
    prefix tokens are -1 so that a wrong slice shows up."""
    grid = torch.zeros(batch, h, w, c)
    for i in range(h):
        for j in range(w):
            grid[:, i, j, :] = 1000 * i + 100 * j + torch.arange(c)
    patches = grid.reshape(batch, h * w, c)
    return torch.cat([torch.full((batch, prefix, c), -1.0), patches], dim=1)


class _FakeTimmViT(nn.Module):
    def __init__(self, prefix: int, patch: int) -> None:
        super().__init__()
        self.num_prefix_tokens = prefix
        self.patch_embed = nn.Module()
        self.patch_embed.patch_size = (patch, patch)  # type: ignore[assignment]


@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
def test_tokens_drop_prefix_and_fill_rows_first(prefix: int) -> None:
    model = _FakeTimmViT(prefix, 16)
    tokens = _numbered_tokens(2, prefix, 3, 5, 4)  # 48 x 80 input -> 3 x 5 grid
    out = spatial_reshape(model, "blocks.0", (48, 80))(tokens)
    assert out.shape == (2, 4, 3, 5)
    # channel k at (i, j) holds 1000 i + 100 j + k
    assert out[1, 2, 1, 4].item() == 1000 * 1 + 100 * 4 + 2
    assert out[0, 0, 2, 0].item() == 2000
    assert (out >= 0).all()  # no prefix token leaked in


def test_nhwc_is_permuted() -> None:
    t = torch.arange(2 * 4 * 6 * 32, dtype=torch.float32).reshape(2, 4, 6, 32)  # (B, h, w, C)
    out = spatial_reshape(nn.Identity(), "stage", (64, 96))(t)
    assert out.shape == (2, 32, 4, 6)
    assert out[1, 7, 3, 5].item() == t[1, 3, 5, 7].item()


def test_nchw_passes_through_even_when_square() -> None:
    t = torch.randn(1, 16, 16, 16)  # ambiguous: a CNN's NCHW unless the model says channels-last
    assert spatial_reshape(nn.Identity(), "conv", (64, 64))(t) is t
    swin = tvm.swin_t(weights=None, num_classes=3)
    assert token_facts(swin).channels_last
    assert layout_of((16, 16, 16), token_facts(swin), (64, 64)).kind == "NHWC"  # type: ignore[union-attr]


def test_token_grid_uses_patch_size_then_aspect_ratio() -> None:
    assert token_grid(12, (48, 64), (16, 16)) == (3, 4)
    assert token_grid(8, (64, 128)) == (2, 4)  # Swin stage: no patch fact at this stride
    assert token_grid(16, (64, 64)) == (4, 4)
    assert token_grid(17, (64, 64)) is None  # prime: no grid with a sensible aspect ratio


def test_unknown_prefix_is_found_from_the_token_count() -> None:
    facts = TokenFacts()  # nothing known
    layout = layout_of((198, 8), facts, (224, 224))  # DeiT: 2 prefix tokens + 14 x 14
    assert layout is not None and layout.prefix == 2 and layout.grid == (14, 14)


def test_patch_embedding_tokens_come_before_the_prefix_tokens() -> None:
    """A timm ViT's ``patch_embed`` outputs the 8x8 patches alone: not 1 prefix token + 7x9."""
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, num_classes=3, depth=1
    )
    facts = token_facts(vit)
    assert facts.prefix_tokens == 1
    layout = layout_of((64, 192), facts, (32, 32))
    assert layout is not None and (layout.prefix, layout.grid) == (0, (8, 8))
    after = layout_of((65, 192), facts, (32, 32))  # the blocks: class token + 8x8 patches
    assert after is not None and (after.prefix, after.grid) == (1, (8, 8))
    tokens = _numbered_tokens(2, 0, 8, 8, 3)
    out = spatial_reshape(vit, "patch_embed", (32, 32))(tokens)
    assert out.shape == (2, 3, 8, 8) and out[0, 2, 7, 1].item() == 7000 + 100 + 2


def test_facts_from_real_models() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=3)
    assert token_facts(vit) == TokenFacts(1, (16, 16), False, "timm num_prefix_tokens")
    deit = timm.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=64, num_classes=3
    )
    assert token_facts(deit).prefix_tokens == 2
    reg = timm.create_model(
        "vit_small_patch16_224", pretrained=False, img_size=64, num_classes=3, reg_tokens=4, depth=1
    )
    assert token_facts(reg).prefix_tokens == 5
    tv_vit = tvm.vit_b_16(weights=None, image_size=64, num_classes=3)
    assert token_facts(tv_vit).prefix_tokens == 1 and token_facts(tv_vit).patch_size == (16, 16)
    timm_swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64)
    assert token_facts(timm_swin).channels_last


def test_register_tokens_give_the_same_map_as_slicing_by_hand() -> None:
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_small_patch16_224", pretrained=False, img_size=64, num_classes=5, reg_tokens=4, depth=2
    ).eval()
    x = torch.randn(1, 3, 64, 64)

    def by_hand(t: Tensor) -> Tensor:
        return t[:, 5:].reshape(t.shape[0], 4, 4, t.shape[-1]).permute(0, 3, 1, 2)

    auto = camscope.explain(model, x, "gradcam", layer="blocks.1.norm1")
    manual = camscope.explain(model, x, "gradcam", layer="blocks.1.norm1", reshape=by_hand)
    torch.testing.assert_close(auto.raw["gradcam"], manual.raw["gradcam"])
    assert float(auto.raw["gradcam"].std()) > 0


def test_user_reshape_overrides() -> None:
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=3, depth=1
    ).eval()
    seen = []

    def mine(t: Tensor) -> Tensor:
        seen.append(tuple(t.shape))
        return t[:, 1:].reshape(t.shape[0], 2, 8, t.shape[-1]).permute(0, 3, 1, 2)  # a 2 x 8 grid

    res = camscope.explain(
        model, torch.randn(1, 3, 64, 64), "gradcam", layer="blocks.0", reshape=mine
    )
    assert seen and res.raw["gradcam"].shape == (1, 2, 8)


def test_unlayable_tokens_say_how_to_pass_reshape() -> None:
    model = _FakeTimmViT(1, 16)
    with pytest.raises(LayerError, match="reshape=lambda"):
        spatial_reshape(model, "blocks.3", (64, 64))(torch.randn(1, 14, 8))  # 13 patch tokens
    with pytest.raises(LayerError, match="feature map or token"):
        spatial_reshape(model, "head", (64, 64))(torch.randn(1, 8))

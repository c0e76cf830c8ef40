"""The classifiers camscope train builds: seed 004's GapNet (full-resolution CAM), the small-input
stem and the map-size check behind seed 003's 1x1 observation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camscope import explain
from camscope.errors import UsageError
from camscope.models.architectures import adapt_small_input, build_classifier, map_check
from camscope.models.gapnet import GapNet


@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_gapnet_raw_cam_has_the_input_size(size) -> None:
    torch.manual_seed(0)
    model = GapNet(num_classes=3, width=6, depth=2).eval()
    x = torch.randn(2, 3, *size)
    res = explain(model, x, ["cam", "gradcam"], targets=[0, 2])
    assert res.layer == "features"
    assert tuple(res.raw["cam"].shape) == (2, *size)
    assert tuple(res.raw["gradcam"].shape) == (2, *size)


def test_gapnet_cam_is_the_classifier_weighted_feature_sum() -> None:
    """CAM (Zhou et al. 2016, Eq. 2) worked out from the network's own parts."""
    torch.manual_seed(1)
    model = GapNet(num_classes=3, width=5, depth=1).eval()
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        features = model.features(x)[0]  # (5, 12, 12)
        expected = torch.einsum("k,khw->hw", model.fc.weight[1], features)
    res = explain(model, x, "cam", targets=[1])
    torch.testing.assert_close(res.raw["cam"][0], expected, rtol=1e-5, atol=1e-5)


def test_gapnet_pooled_is_the_same_network_with_pooling() -> None:
    plain = GapNet(4, width=8, depth=3)
    pooled = GapNet(4, width=8, depth=3, pooled=True)
    shapes = [p.shape for p in plain.parameters()]
    assert shapes == [p.shape for p in pooled.parameters()]  # same parameters, pooling only
    assert sum(isinstance(m, nn.MaxPool2d) for m in pooled.modules()) == 2
    res = explain(pooled.eval(), torch.randn(1, 3, 32, 32), "cam")
    assert tuple(res.raw["cam"].shape[-2:]) == (8, 8)
    with pytest.raises(UsageError, match="depth"):
        GapNet(4, depth=0)


def test_resnet18_stems_at_32_px() -> None:
    cifar = build_classifier("resnet18", num_classes=10, image_size=32)
    assert cifar.stem == "cifar" and cifar.arch == "timm:resnet18"
    conv1 = cifar.model.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    assert isinstance(cifar.model.maxpool, nn.Identity)
    check = map_check(cifar.model, 32)
    assert check.layer == "layer4" and check.size == (4, 4) and check.ok
    imagenet = build_classifier("resnet18", num_classes=10, image_size=32, stem="imagenet")
    check = map_check(imagenet.model, 32)
    assert check.size == (1, 1) and not check.ok
    assert check.usable[0] == ("layer2", (4, 4))  # the deepest layer with a usable map
    assert "layer2 (4x4)" in check.message(32) and "1x1" in check.message(32)
    # at 224 px the architecture stays as published
    assert build_classifier("resnet18", 10, 224).stem == "imagenet"


def test_efficientnet_stem_and_small_map_warning() -> None:
    built = build_classifier("efficientnet_b0", num_classes=4, image_size=32)
    assert built.model.conv_stem.stride == (1, 1)
    check = map_check(built.model, 32)
    assert check.size == (2, 2) and not check.ok  # stride 16 remains: say so
    assert check.usable and min(check.usable[0][1]) >= 4


def test_vgg_like_network_loses_its_last_pools() -> None:
    layers: list[nn.Module] = []
    for _ in range(5):  # VGG: 3x3 stride-1 convolutions, a max-pool after each block
        layers += [nn.Conv2d(3 if not layers else 4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    notes = adapt_small_input(model, 32)
    assert notes == ["14: max-pool removed", "11: max-pool removed"]
    assert model[:-3](torch.zeros(1, 3, 32, 32)).shape[-1] == 4


def test_swin_is_built_for_the_image_size() -> None:
    built = build_classifier("swin_tiny", num_classes=5, image_size=32)
    assert built.stem == "none" and built.arch == "timm:swin_tiny_patch4_window7_224"
    assert built.model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_unknown_names_and_options() -> None:
    with pytest.raises(UsageError, match="resnet18"):
        build_classifier("resnet_18", 4, 32)
    with pytest.raises(UsageError, match="width"):
        build_classifier("gapnet", 4, 32, options={"widht": 3})
    with pytest.raises(UsageError, match="stem"):
        build_classifier("gapnet", 4, 32, stem="cifar10")


@pytest.mark.parametrize(
    ("name", "stem_conv", "layer"),
    [("mobilenetv3_large_100", "conv_stem", "blocks.6"), ("regnety_004", "stem.conv", "s4")],
)
def test_seed_003_families_get_the_stem_and_name_their_usable_layers(
    name, stem_conv, layer
) -> None:
    built = build_classifier(name, num_classes=100, image_size=32)
    assert built.stem == "cifar" and built.arch == f"timm:{name}"
    assert built.model.get_submodule(stem_conv).stride == (1, 1)
    assert built.model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    check = map_check(built.model, 32)
    assert check.layer == layer and check.size == (2, 2) and not check.ok  # stride 16 remains
    deepest, shape = check.usable[0]
    assert min(shape) >= 4 and deepest in check.message(32)


def test_vit_gets_an_8x8_patch_grid_at_small_inputs() -> None:
    import timm

    torch.manual_seed(3)
    built = build_classifier("vit_tiny_patch16_224", num_classes=4, image_size=32)
    assert built.arch == "timm:vit_tiny_patch16_224" and built.stem == "cifar"
    assert built.notes[-1] == "patch_embed: patch 16 -> 4 (8x8 tokens)"
    assert tuple(built.model.patch_embed.grid_size) == (8, 8)
    assert built.model.pos_embed.shape == (1, 1 + 64, 192)  # class token + 8x8 patches
    # the meta-device look at the published patch draws nothing: same weights as timm's own build
    torch.manual_seed(3)
    plain = timm.create_model("vit_tiny_patch16_224", num_classes=4, img_size=32, patch_size=4)
    for (name, ours), theirs in zip(built.model.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)
    check = map_check(built.model, 32)
    assert check.layer == "blocks.11.norm1" and check.size == (8, 8) and check.ok
    # 64 px: patch 8, still 8x8
    wide = build_classifier("deit_tiny_patch16_224", 4, 64, options={"depth": 1})
    assert wide.stem == "cifar" and tuple(wide.model.patch_embed.patch_size) == (8, 8)
    assert wide.model(torch.zeros(2, 3, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize(
    ("size", "stem", "options", "patch", "recorded"),
    [
        (32, "imagenet", {}, 16, "imagenet"),  # as published: a 2x2 grid
        (32, "auto", {"patch_size": 2}, 2, "imagenet"),  # the option wins
        (224, "auto", {}, 16, "imagenet"),  # large inputs keep the published patch
        (96, "cifar", {}, 12, "cifar"),  # asked for above 64 px: 8x8 tokens
        (224, "cifar", {}, 16, "imagenet"),  # never a larger patch than published
    ],
)
def test_vit_patch_follows_stem_and_options(size, stem, options, patch, recorded) -> None:
    built = build_classifier(
        "vit_tiny_patch16_224", 3, size, stem=stem, options={"depth": 1, **options}
    )
    assert tuple(built.model.patch_embed.patch_size) == (patch, patch)
    assert built.stem == recorded
    assert built.model(torch.zeros(1, 3, size, size)).shape == (1, 3)


def test_distilled_deit_small_patch_and_the_attention_methods_run() -> None:
    torch.manual_seed(0)
    built = build_classifier("deit_tiny_distilled_patch16_224", 4, 32, options={"depth": 2})
    assert built.stem == "cifar" and tuple(built.model.patch_embed.grid_size) == (8, 8)
    model = built.model.eval()
    x = torch.randn(2, 3, 32, 32)
    methods = ["legrad", "attention-rollout", "transformer-attribution", "vit-reciprocam"]
    res = explain(model, x, methods, targets=[1, 3])
    for name in methods:
        raw = res.raw[name]
        assert tuple(raw.shape) == (2, 8, 8), name  # one value per patch token
        assert torch.isfinite(raw).all() and float(raw.std()) > 0, name

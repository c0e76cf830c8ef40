"""Methods and layers that cannot run are skipped with their reason (issue 16, item 9), and maps
that are all zero come with a warning that says why (issue 16, item 11)."""

from __future__ import annotations

import pytest
import torch
from nets import GapNet, SideBranch, SmallNet, hook_counts, ramp
from torch import nn

from camscope import explain
from camscope.errors import UnsupportedModelError, UsageError


def small() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet(classes=5).eval()


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_an_incompatible_method_is_skipped_and_the_others_are_returned() -> None:
    net = small()
    # CAM needs the layer that feeds global average pooling: 'features', not 'stem'
    res = explain(net, X, ["gradcam", "cam"], layer="stem", targets=[0, 1])
    assert set(res.maps) == {"gradcam"}
    assert list(res.skipped) == ["cam"]
    assert "classifier expects 6" in res.skipped["cam"]
    alone = explain(net, X, "gradcam", layer="stem", targets=[0, 1])
    torch.testing.assert_close(res.maps["gradcam"], alone.maps["gradcam"])
    with pytest.raises(UnsupportedModelError, match="classifier expects 6"):
        explain(net, X, ["gradcam", "cam"], layer="stem", targets=[0, 1], strict=True)
    with pytest.raises(UnsupportedModelError, match="classifier expects 6"):
        explain(net, X, "cam", layer="stem", targets=[0, 1])  # nothing left to return
    assert hook_counts(net) == {}


def test_a_method_skipped_at_one_layer_keeps_its_other_layers() -> None:
    net = small()
    res = explain(net, X, ["gradcam", "cam"], layer=["stem", "features"], targets=[0, 1])
    assert list(res.skipped) == ["cam@stem"]
    assert res.layer == ["stem", "features"]
    assert set(res.layer_maps["stem"]) == {"gradcam"}
    assert set(res.layer_maps["features"]) == {"gradcam", "cam"}
    at_features = explain(net, X, "cam", layer="features", targets=[0, 1])
    torch.testing.assert_close(res.maps["cam"], at_features.maps["cam"])
    torch.testing.assert_close(res.raw["cam"], at_features.raw["cam"])
    smooth = explain(
        net, X, ["gradcam", "cam"], layer=["stem", "features"], targets=[0, 1], aug_smooth=True
    )
    assert list(smooth.skipped) == ["cam@stem"] and set(smooth.maps) == {"gradcam", "cam"}


def test_a_layer_the_target_does_not_depend_on_is_skipped() -> None:
    net, x = SideBranch().eval(), torch.randn(1, 3, 8, 8)
    res = explain(net, x, ["gradcam", "layercam"], layer=["conv", "unused"], targets=1)
    assert res.layer == "conv" and set(res.layer_maps) == {"conv"}
    assert set(res.skipped) == {"gradcam@unused", "layercam@unused"}
    assert "does not depend on layer 'unused'" in res.skipped["gradcam@unused"]
    with pytest.raises(UsageError, match="does not depend on layer 'unused'"):
        explain(net, x, "gradcam", layer=["conv", "unused"], targets=1, strict=True)
    assert hook_counts(net) == {}


def test_callable_targets_skip_the_class_scoring_methods() -> None:
    net = small()
    res = explain(net, X, ["gradcam", "scorecam"], layer="features", targets=lambda o: o[:, 2])
    assert set(res.maps) == {"gradcam"} and "callable" in res.skipped["scorecam"]
    assert res.probability_kind == "none" and res.probabilities is None


def test_an_all_zero_map_is_a_warning_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    # GapNet class 2 has head weights (0.5, 0.5): every gradient is positive, so the
    # counterfactual map ReLU(-Grad-CAM) is zero everywhere
    with caplog.at_level("WARNING"):
        res = explain(GapNet(), ramp(), ["gradcam", "counterfactual"], layer="relu", targets=2)
    assert float(res.maps["counterfactual"].max()) == 0.0
    assert len(res.warnings) == 1
    assert "counterfactual at layer 'relu': the map is zero everywhere" in res.warnings[0]
    assert "counterfactual at layer 'relu'" in caplog.text


def test_a_class_token_vit_last_block_warns_and_names_the_layer_to_use() -> None:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=4
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    res = explain(vit, x, ["gradcam", "layercam", "eigencam"], layer="blocks.2", targets=0)
    assert float(res.maps["gradcam"].max()) == 0.0  # the patch tokens do not reach the head
    assert len(res.warnings) == 1, res.warnings
    assert "class token" in res.warnings[0] and "'blocks.2.norm1'" in res.warnings[0]
    good = explain(vit, x, ["gradcam"], layer="auto", targets=0)
    assert good.layer == "blocks.2.norm1" and good.warnings == []

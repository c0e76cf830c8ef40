"""Cascading randomization and SSIM."""

from __future__ import annotations

import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn

from camscope.metrics.sanity import cascading_randomization, parameter_units, ssim


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).eval()


def test_ssim_matches_skimage():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 24, 24, generator=gen)
    b = (a + 0.2 * torch.rand(2, 24, 24, generator=gen)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        ref = structural_similarity(
            a[i].numpy().astype("float64"), b[i].numpy().astype("float64"),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        )  # fmt: skip
        assert float(ours[i]) == pytest.approx(ref, abs=1e-4)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


def test_units_in_forward_order():
    assert parameter_units(tiny_net(), torch.rand(1, 3, 8, 8), depth=1) == ["0", "2", "6"]


def test_cascade_separates_sensitive_and_insensitive_methods():
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    res = cascading_randomization(model, x, ["gradcam", "eigencam"], layer="2", depth=1)
    assert res.steps == ["6", "2", "0"]  # logits first, then down the network
    # Randomising only the classifier cannot change EigenCAM (activations only) ...
    assert res.spearman["eigencam"][0] == pytest.approx(1.0)
    assert res.ssim["eigencam"][0] == pytest.approx(1.0)
    # ... but changes Grad-CAM, whose weights come from the classifier's gradients.
    assert res.spearman["gradcam"][0] < 0.99
    assert res.per_image_spearman["gradcam"].shape == (3, 2)
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

"""Cascading randomization and SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camscope.errors import UsageError
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


def _ssim_by_the_formula(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5):
    """Wang et al. (2004) written out: Gaussian-weighted means, population (co)variances and the
    SSIM index at every window that fits inside the image, then their mean (data range 1)."""
    half = window // 2
    t = np.arange(window) - half
    g = np.exp(-(t**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(half, a.shape[0] - half):
        for j in range(half, a.shape[1] - half):
            pa = a[i - half : i + half + 1, j - half : j + half + 1]
            pb = b[i - half : i + half + 1, j - half : j + half + 1]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
            cov = (w * pa * pb).sum() - ma * mb
            values.append(
                ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(values))


def test_ssim_matches_the_formula_written_out():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 24, 24, generator=gen)
    b = (a + 0.2 * torch.rand(2, 24, 24, generator=gen)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        ref = _ssim_by_the_formula(a[i].double().numpy(), b[i].double().numpy())
        assert float(ours[i]) == pytest.approx(ref, abs=1e-4)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)
    assert ours.dtype == torch.float32 and ours.shape == (2,)


def test_ssim_of_two_flat_maps_by_hand():
    # no variance: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) = 0.2501 / 0.3126
    a = torch.full((1, 16, 16), 0.5)
    b = torch.full((1, 16, 16), 0.25)
    assert float(ssim(a, b)[0]) == pytest.approx(0.2501 / 0.3126, abs=1e-6)
    with pytest.raises(UsageError, match="ssim needs two"):
        ssim(a, b[:, :8])


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

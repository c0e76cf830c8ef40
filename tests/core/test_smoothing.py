"""aug_smooth (test-time flips and scales) and eigen_smooth on every method."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camscope import explain, get_method, list_methods
from camscope.core.ops import normalise
from camscope.core.smoothing import AUGMENTATIONS

SLOW = {"num_samples": 2}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def brightness_net() -> nn.Module:
    """A = sum of the input channels (1x1 conv of ones) after ReLU; logit 0 = mean(A)."""
    conv = nn.Conv2d(3, 1, 1, bias=False)
    head = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    return nn.Sequential(
        OrderedDict(
            [
                ("feat", conv),
                ("act", nn.ReLU()),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()),
                ("head", head),
            ]
        )
    ).eval()


@pytest.mark.parametrize("method", [m for m in list_methods() if get_method(m).models == "any"])
@pytest.mark.parametrize("smooth", ["aug_smooth", "eigen_smooth"])
def test_every_method_accepts_smoothing(method: str, smooth: str) -> None:
    model = Net().eval()
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    res = explain(model, x, method, "features", method_options=SLOW, **{smooth: True})
    m = res.maps[method]
    assert m.shape == (1, 24, 24)
    assert bool(torch.isfinite(m).all()) and float(m.min()) >= 0 and float(m.max()) <= 1


def test_aug_smooth_is_the_average_of_maps_mapped_back() -> None:
    model = Net().eval()
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    plain = explain(model, x, "gradcam", "features")
    cls = plain.targets.tolist()
    total = plain.maps["gradcam"].clone()
    # flip: map of the flipped input, flipped back
    total += explain(model, x.flip(-1), "gradcam", "features", cls).maps["gradcam"].flip(-1)
    for scale in (1.125, 0.875):
        side = round(24 * scale)
        xs = F.interpolate(x, size=(side, side), mode="bilinear", antialias=scale < 1)
        ms = explain(model, xs, "gradcam", "features", cls).maps["gradcam"]
        total += F.interpolate(ms[:, None], size=(24, 24), mode="bilinear")[:, 0]
    expected = normalise(total / 4)
    got = explain(model, x, "gradcam", "features", aug_smooth=True).maps["gradcam"]
    assert [a.name for a in AUGMENTATIONS] == ["identity", "hflip", "scale-1.125", "scale-0.875"]
    assert (got - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_aug_smooth_keeps_the_map_where_the_evidence_is(method: str) -> None:
    # Bright patch in the left half: for this net every map is the brightness itself; a wrong
    # inverse of the flip would put half of the smoothed map on the right.
    x = torch.zeros(1, 3, 16, 16)
    x[..., 4:8, 2:6] = 1.0
    m = explain(brightness_net(), x, method, "act", targets=0, aug_smooth=True).maps[method][0]
    left, right = float(m[:, :8].sum()), float(m[:, 8:].sum())
    assert right < 0.05 * left
    assert float(m[4:8, 2:6].mean()) > 0.5


def test_aug_smooth_keeps_the_top_k_classes_of_the_input() -> None:
    model = Net().eval()
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    plain = explain(model, x, "gradcam", "features", targets="top2")
    smooth = explain(model, x, "gradcam", "features", targets="top2", aug_smooth=True)
    assert torch.equal(plain.targets, smooth.targets)
    assert smooth.maps["gradcam"].shape == (1, 2, 24, 24)
    # raw maps come from the unaugmented pass
    assert torch.equal(plain.raw["gradcam"], smooth.raw["gradcam"])


def test_aug_smooth_passes_are_counted_in_the_estimate_and_match_the_model_calls() -> None:
    # the estimate of a call with aug_smooth counts every augmented copy: each method's own
    # passes once per copy, plus the forward (and backward) of each extra copy; the number of
    # forward calls the model sees is the check
    from camscope.methods import estimate_passes

    model = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 4, 3, padding=1),
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(4, 3),
        )
    ).eval()
    x = torch.rand(1, 3, 16, 16)
    plain = estimate_passes(model, x, ["gradcam", "scorecam"], "relu")
    smooth = estimate_passes(model, x, ["gradcam", "scorecam"], "relu", aug_smooth=True)
    copies = len(AUGMENTATIONS)
    assert copies == 4
    assert plain == {"gradcam": 0, "scorecam": 5}  # 4 channels + the unmasked pass
    # Grad-CAM: a forward and a backward per extra copy; Score-CAM (no backward) a forward
    assert smooth == {"gradcam": 3 * 2, "scorecam": 4 * 5 + 3 * 1}
    calls = []
    handle = model.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    try:
        explain(model, x, "scorecam", "relu", aug_smooth=True)
    finally:
        handle.remove()
    # every copy: one forward (its backward is not a forward call) plus 5 masked passes; masked
    # passes may run in batches, so count images, not calls
    assert sum(calls) <= copies * (1 + 5)

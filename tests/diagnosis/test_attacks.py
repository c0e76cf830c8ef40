"""FGSM and PGD: closed form on a linear model, Captum's implementation as a check, no side
effects, bad inputs."""

from __future__ import annotations

import pytest
import torch
from nets import SmallNet
from torch import nn

from camscope.diagnosis.attacks import attack, fgsm, pgd, pixel_forward, to_8bit
from camscope.errors import UsageError

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.5, 2.0)


def linear_model() -> tuple[nn.Module, torch.Tensor]:
    """Two classes, logits = W z + b on the normalised 3 x 2 x 2 input z = (x - mean) / std.

    For the cross-entropy of class 0, d loss / d logits = (p0 - 1, p1) = p1 (-1, 1), so
    d loss / d x = p1 (w1 - w0) / std: its sign is sign(w1 - w0) (std > 0, p1 > 0). Targeted
    towards class 1 gives the same direction.
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, 12))
    direction = torch.sign(net[1].weight[1] - net[1].weight[0]).detach().reshape(1, 3, 2, 2)
    return net.eval(), direction


def test_fgsm_step_in_closed_form() -> None:
    net, direction = linear_model()
    x = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    x[0, 0, 0, 0] = 1.0  # a saturated pixel: clipped if pushed up
    eps = 2 / 255
    expected = (x + eps * direction).clamp(0, 1)
    got = fgsm(net, x, torch.tensor([0, 0]), eps, mean=MEAN, std=STD)
    torch.testing.assert_close(got, expected, atol=1e-7, rtol=0)
    assert float(got[0, 0, 0, 0]) == 1.0 or float(direction[0, 0, 0, 0]) < 0
    targeted = fgsm(net, x, torch.tensor([1, 1]), eps, mean=MEAN, std=STD, targeted=True)
    torch.testing.assert_close(targeted, expected, atol=1e-7, rtol=0)
    # away from class 1 is the opposite direction
    away = fgsm(net, x, torch.tensor([1, 1]), eps, mean=MEAN, std=STD)
    torch.testing.assert_close(away, (x - eps * direction).clamp(0, 1), atol=1e-7, rtol=0)


def test_pgd_in_closed_form_stays_in_the_ball() -> None:
    # The direction never changes, so PGD walks steps * alpha = 2.5 eps and the projection
    # stops it at eps: the FGSM result. With 2 steps of eps / 4 it stops at eps / 2.
    net, direction = linear_model()
    x = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    eps = 4 / 255
    got = pgd(net, x, torch.tensor([0, 0]), eps, 10, mean=MEAN, std=STD)
    torch.testing.assert_close(got, (x + eps * direction).clamp(0, 1), atol=1e-7, rtol=0)
    short = pgd(net, x, torch.tensor([0, 0]), eps, 2, step_size=eps / 4, mean=MEAN, std=STD)
    torch.testing.assert_close(short, (x + eps / 2 * direction).clamp(0, 1), atol=1e-7, rtol=0)
    start = pgd(net, x, torch.tensor([0, 0]), eps, 3, mean=MEAN, std=STD, random_start=True)
    assert float((start - x).abs().max()) <= eps + 1e-7 and float(start.min()) >= 0


def small_model() -> nn.Module:
    torch.manual_seed(3)
    return SmallNet(classes=5).eval()


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@pytest.mark.parametrize("targeted", [False, True])
def test_agrees_with_captum(targeted: bool) -> None:
    from captum.robust import FGSM, PGD

    net = small_model()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    forward = pixel_forward(net, MEAN, STD)
    labels = torch.tensor([4, 1, 2]) if targeted else forward(x).argmax(1)
    loss = nn.CrossEntropyLoss(reduction="none")
    eps = 2 / 255
    theirs_fgsm = FGSM(forward, loss, lower_bound=0.0, upper_bound=1.0)
    theirs_fgsm.zero_thresh = 0.0  # Captum leaves pixels with |grad| <= 1e-6 alone by default
    expected = theirs_fgsm.perturb(x, eps, labels, targeted=targeted)
    got = fgsm(net, x, labels, eps, mean=MEAN, std=STD, targeted=targeted)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    theirs_pgd = PGD(forward, loss, lower_bound=0.0, upper_bound=1.0)
    theirs_pgd.fgsm.zero_thresh = 0.0
    alpha = 2.5 * eps / 10
    expected = theirs_pgd.perturb(x, eps, alpha, 10, labels, targeted=targeted, random_start=False)
    got = pgd(net, x, labels, eps, 10, mean=MEAN, std=STD, targeted=targeted)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert float((got - x).abs().max()) == pytest.approx(eps, abs=1e-6)


def test_no_side_effects_on_the_model() -> None:
    net = small_model()
    net.train()
    net.stem[1].eval()
    net.fc.weight.requires_grad_(False)
    modes = {n: m.training for n, m in net.named_modules()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    x = torch.rand(2, 3, 16, 16)
    attack("pgd", net, x, torch.tensor([0, 1]), 2 / 255, steps=2, mean=MEAN, std=STD)
    assert {n: m.training for n, m in net.named_modules()} == modes
    assert all(p.grad is None for p in net.parameters())
    assert not net.fc.weight.requires_grad and net.fc.bias.requires_grad
    assert all(torch.equal(b, buffers[n]) for n, b in net.named_buffers())


def test_bad_inputs_are_usage_errors() -> None:
    net, x = small_model(), torch.rand(1, 3, 16, 16)
    with pytest.raises(UsageError, match="eps"):
        fgsm(net, x, torch.tensor([0]), 0.0)
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        fgsm(net, x * 3, torch.tensor([0]), 0.01)
    with pytest.raises(UsageError, match="one label per image"):
        fgsm(net, x, torch.tensor([0, 1]), 0.01)
    with pytest.raises(UsageError, match="unknown attack"):
        attack("cw", net, x, torch.tensor([0]), 0.01)
    with pytest.raises(UsageError, match="step"):
        pgd(net, x, torch.tensor([0]), 0.01, 0)


def test_8bit_rounding() -> None:
    x = torch.tensor([0.0, 0.5 / 255, 0.51 / 255, 1.2])
    assert (to_8bit(x) * 255).tolist() == [0.0, 0.0, 1.0, 255.0]


def test_single_logit_model_in_closed_form() -> None:
    # One sigmoid logit w . z + b (classes 0 = negative, 1 = positive, as explain()). Away from
    # class 1 the loss -log sigmoid(logit) has gradient -(1 - p) w / std: the step is
    # -eps sign(w); away from class 0 (or towards 1) it is +eps sign(w).
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 1)).eval()
    sign_w = torch.sign(net[1].weight[0]).detach().reshape(1, 3, 2, 2)
    x = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(4)) * 0.5 + 0.25
    eps = 2 / 255
    away_from_positive = fgsm(net, x, torch.tensor([1, 1]), eps, mean=MEAN, std=STD)
    torch.testing.assert_close(away_from_positive, x - eps * sign_w, atol=1e-7, rtol=0)
    away_from_negative = fgsm(net, x, torch.tensor([0, 0]), eps, mean=MEAN, std=STD)
    torch.testing.assert_close(away_from_negative, x + eps * sign_w, atol=1e-7, rtol=0)
    towards_positive = fgsm(net, x, torch.tensor([1, 1]), eps, mean=MEAN, std=STD, targeted=True)
    torch.testing.assert_close(towards_positive, x + eps * sign_w, atol=1e-7, rtol=0)
    with pytest.raises(UsageError, match="classes 0 and 1"):
        fgsm(net, x, torch.tensor([2, 0]), eps, mean=MEAN, std=STD)

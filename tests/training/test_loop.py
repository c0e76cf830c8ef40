"""The training step by hand: label smoothing, gradient clipping, the per-step schedule, bf16
autocast on the CPU, channels_last, and validation's confusion matrix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camscope.training.loop import Step, evaluate, train_epoch
from camscope.training.transforms import Normalize

CPU = torch.device("cpu")


def _batches(seed: int, count: int, size: int = 4, batch: int = 6):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        images = torch.randint(0, 256, (batch, 3, size, size), generator=generator).to(torch.uint8)
        labels = torch.randint(0, 3, (batch,), generator=generator)
        out.append((images, labels, []))
    return out


def _step(model: nn.Module, lr: float, **options) -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Step(
        model,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s)),
        torch.amp.GradScaler("cpu", enabled=False),
        nn.CrossEntropyLoss(label_smoothing=options.pop("label_smoothing", 0.0)),
        Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), CPU),
        CPU,
        **options,
    )


def test_one_step_equals_the_update_worked_out_by_hand() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    w0, b0 = (p.detach().clone() for p in model[1].parameters())
    batches = _batches(1, 2)
    step = _step(model, 0.5, label_smoothing=0.2, clip_grad=0.1)
    stats = train_epoch(step, batches)

    # by hand: eps-smoothed targets (1 - eps + eps/K on the class, eps/K elsewhere), softmax
    # gradient (p - t) / n, clip the joint norm to 0.1, SGD with lr 0.5 then 0.5 / 2
    w, b = w0.clone(), b0.clone()
    losses, correct = [], 0
    for i, (images, labels, _) in enumerate(batches):
        x = ((images.float() / 255 - 0.5) / 0.25).flatten(1)
        logits = x @ w.T + b
        target = torch.full((6, 3), 0.2 / 3)
        target[torch.arange(6), labels] += 0.8
        p = logits.softmax(1)
        losses.append(float(-(target * p.log()).sum(1).mean()))
        correct += int((logits.argmax(1) == labels).sum())
        g_logits = (p - target) / 6
        gw, gb = g_logits.T @ x, g_logits.sum(0)
        norm = torch.sqrt((gw**2).sum() + (gb**2).sum())
        assert norm > 0.1  # the clip does something
        scale = 0.1 / (norm + 1e-6)
        lr = 0.5 / (1 + i)
        w, b = w - lr * scale * gw, b - lr * scale * gb
    torch.testing.assert_close(model[1].weight.detach(), w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].bias.detach(), b, rtol=1e-5, atol=1e-6)
    assert stats.images == 12 and stats.correct == correct
    assert stats.loss == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert step.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 / 3)  # stepped per batch


def _conv_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def test_bf16_autocast_on_cpu_and_channels_last_train_like_float32() -> None:
    batches = _batches(2, 3, size=8)
    reference = _conv_net()
    plain = train_epoch(_step(reference, 0.1), batches)
    bf16_model = _conv_net()
    bf16 = train_epoch(_step(bf16_model, 0.1, autocast_dtype=torch.bfloat16), batches)
    last_model = _conv_net().to(memory_format=torch.channels_last)
    last = train_epoch(_step(last_model, 0.1, channels_last=True), batches)
    # weights stay float32 under autocast; bf16 keeps ~3 significant digits
    assert all(p.dtype == torch.float32 for p in bf16_model.parameters())
    assert bf16.loss == pytest.approx(plain.loss, rel=2e-2)
    for a, b in zip(reference.parameters(), bf16_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-2)
        assert not torch.equal(a, b)  # bf16 did run
    assert last.loss == pytest.approx(plain.loss, rel=1e-5)
    for a, b in zip(reference.parameters(), last_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_validation_counts_a_confusion_matrix_and_plain_cross_entropy() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    batches = _batches(4, 2)
    step = _step(model, 0.1, label_smoothing=0.3)  # validation ignores the smoothing
    stats = evaluate(step, batches, 3)
    expected = torch.zeros(3, 3, dtype=torch.long)
    loss = 0.0
    with torch.no_grad():
        for images, labels, _ in batches:
            logits = model((images.float() / 255 - 0.5) / 0.25)
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            for truth, guess in zip(labels, logits.argmax(1)):
                expected[truth, guess] += 1
    assert torch.equal(stats.confusion, expected)
    assert stats.correct == int(expected.diagonal().sum()) and stats.images == 12
    assert stats.loss == pytest.approx(loss / 12, rel=1e-5)
    assert not model.training  # validation leaves eval mode: the loop sets the mode per pass


def test_the_cuda_recipe_fp16_with_the_gradient_scaler_runs_on_the_cpu() -> None:
    """The GPU path (fp16 autocast, a live GradScaler, clipping the unscaled gradients), run on
    the CPU, where torch supports both: its updates are float32's within 20% of each tensor's
    largest update (the convolution's, ~1e-4, carry fp16 rounding); clipping the still-scaled
    gradients would leave 1 / 4096 of them."""
    batches = _batches(5, 3, size=8)
    start = [p.detach().clone() for p in _conv_net().parameters()]
    reference = _conv_net()
    plain = train_epoch(_step(reference, 0.1, clip_grad=0.05), batches)
    half = _conv_net()
    step = _step(half, 0.1, clip_grad=0.05, autocast_dtype=torch.float16)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    stats = train_epoch(step, batches)
    assert step.scaler.get_scale() == 2.0**12  # no overflow, no skipped step
    assert stats.loss == pytest.approx(plain.loss, rel=1e-2)
    for p0, a, b in zip(start, reference.parameters(), half.parameters()):
        assert b.dtype == torch.float32
        moved, expected = b.detach() - p0, a.detach() - p0
        assert expected.abs().max() > 1e-5  # every tensor was updated
        torch.testing.assert_close(moved, expected, rtol=0, atol=0.2 * expected.abs().max())

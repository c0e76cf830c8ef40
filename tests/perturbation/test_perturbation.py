"""Score-CAM family, Ablation-CAM and Smooth Grad-CAM++: hand-worked values, slow references,
chunking, channel skipping, determinism, peers."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camscope import explain
from camscope.core.ops import to_input_space
from camscope.errors import UsageError

PERTURBATION = ["scorecam", "sscam", "iscam", "faster-scorecam", "ablationcam", "smoothgradcam++"]
FEW = {"num_samples": 2}


def hand_net() -> nn.Module:
    """A0 = x, A1 = -x (1x1 conv), logits = spatial means of (A0, A1)."""
    feat = nn.Conv2d(1, 2, 1, bias=False)
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        feat.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        head.weight.copy_(torch.eye(2))
    layers = [("feat", feat), ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten())]
    return nn.Sequential(OrderedDict([*layers, ("head", head)])).eval()


HAND_X = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)


@pytest.mark.reference("scorecam")
def test_scorecam_hand_worked() -> None:
    # Target: class 0 (logits 1.5, -1.5). M0 = x/3 -> masked mean 7/6, p0 = sigmoid(7/3);
    # M1 = (3 - x)/3 -> masked mean 1/3, p0 = sigmoid(2/3). raw = w0 * x + w1 * (-x).
    w0 = 1 / (1 + math.exp(-7 / 3))
    w1 = 1 / (1 + math.exp(-2 / 3))
    res = explain(hand_net(), HAND_X, "scorecam", "feat")
    expected = (w0 - w1) * HAND_X[0, 0]
    assert torch.allclose(res.raw["scorecam"][0], expected, atol=1e-5)
    # peers' weighting: softmax over channels of the target logits 7/6 and 1/3
    soft = torch.tensor([7 / 6, 1 / 3]).softmax(0)
    res = explain(
        hand_net(), HAND_X, "scorecam", "feat", method_options={"score": "channel-softmax"}
    )
    assert torch.allclose(res.raw["scorecam"][0], (soft[0] - soft[1]) * HAND_X[0, 0], atol=1e-5)


@pytest.mark.reference("ablationcam")
def test_ablationcam_hand_worked() -> None:
    # y = mean(A0) = 1.5; zeroing A0 gives 0 (w0 = 1), zeroing A1 changes nothing (w1 = 0).
    res = explain(hand_net(), HAND_X, "ablationcam", "feat")
    assert torch.allclose(res.raw["ablationcam"][0], HAND_X[0, 0], atol=1e-5)


@pytest.mark.reference("iscam")
@pytest.mark.reference("sscam", "faster-scorecam")
def test_sscam_and_faster_scorecam_hand_worked() -> None:
    # Without noise every SS-CAM sample is Score-CAM's masked input: the weights of
    # test_scorecam_hand_worked, w0 = sigmoid(7/3) and w1 = sigmoid(2/3) (p0 of logits (m, -m) is
    # sigmoid(2 m)); Faster Score-CAM keeping both channels is Score-CAM itself.
    w0 = 1 / (1 + math.exp(-7 / 3))
    w1 = 1 / (1 + math.exp(-2 / 3))
    opts = {"noise_std": 0.0, "num_samples": 3, "num_channels": 2}
    res = explain(hand_net(), HAND_X, ["sscam", "faster-scorecam"], "feat", method_options=opts)
    assert torch.allclose(res.raw["sscam"][0], (w0 - w1) * HAND_X[0, 0], atol=1e-5)
    assert torch.allclose(res.raw["faster-scorecam"][0], (w0 - w1) * HAND_X[0, 0], atol=1e-5)


@pytest.mark.reference("sscam")
def test_sscam_noisy_masks_by_the_documented_draws() -> None:
    # N = 2 noisy copies of each mask, sigma = 0.5. Row (sample i, channel k) adds the normal draw
    # of a generator seeded with seed * 1_000_003 + (i * C + k) (C = 2); the weight of channel k
    # is the mean over i of p0 = sigmoid(2 mean(x * (M_k + noise))), with M0 = x / 3 and
    # M1 = (3 - x) / 3 the min-max normalised channels.
    seed, std, x = 5, 0.5, HAND_X[0, 0]
    masks = [x / 3, (3 - x) / 3]
    weights = []
    for k, mask in enumerate(masks):
        ps = []
        for i in range(2):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i * 2 + k)
            noise = torch.randn((2, 2), generator=gen) * std
            ps.append(torch.sigmoid(2 * (x * (mask + noise)).mean()))
        weights.append(sum(ps) / 2)
    opts = {"noise_std": std, "num_samples": 2, "seed": seed}
    res = explain(hand_net(), HAND_X, "sscam", "feat", method_options=opts)
    assert torch.allclose(res.raw["sscam"][0], (weights[0] - weights[1]) * x, atol=1e-5)


@pytest.mark.reference("smoothgradcam++")
def test_smoothgradcampp_hand_worked() -> None:
    # The head is linear in A, so every noisy copy has the same gradients, g0 = 1/4 and g1 = 0
    # (class 0): the averaged powers of g are those of g and Grad-CAM++ remains, g / (2 + S g)
    # per position with S = sum(A0) = 6: (1/4) / (7/2) = 1/14, four positions -> w0 = 2/7.
    res = explain(hand_net(), HAND_X, "smoothgradcam++", "feat", targets=0)
    assert torch.allclose(res.raw["smoothgradcam++"][0], 2 / 7 * HAND_X[0, 0], atol=1e-5)


def test_iscam_hand_worked() -> None:
    # N = 2: masks scaled by 1/2 and 1; masked means 7/12, 7/6 (M0) and 1/6, 1/3 (M1).
    sig = lambda t: 1 / (1 + math.exp(-2 * t))  # noqa: E731  (p0 of logits (t, -t))
    w0 = (sig(7 / 12) + sig(7 / 6)) / 2
    w1 = (sig(1 / 6) + sig(1 / 3)) / 2
    res = explain(hand_net(), HAND_X, "iscam", "feat", method_options={"num_samples": 2})
    assert torch.allclose(res.raw["iscam"][0], (w0 - w1) * HAND_X[0, 0], atol=1e-5)


class TinyNet(nn.Module):
    """Stem -> stage (residual) -> head; ``dead`` zeroes channels, ``dup`` duplicates channels."""

    def __init__(self, channels: int = 12, dead: int = 0, dup: int = 0, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.stage = nn.Sequential(nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(channels, classes)
        with torch.no_grad():
            self.stem[1].running_mean.uniform_(-0.2, 0.2)
            self.stem[1].running_var.uniform_(0.5, 2.0)
            conv = self.stage[0]
            if dead:
                conv.weight[:dead] = 0
                conv.bias[:dead] = -1.0  # ReLU -> exactly zero
            for i in range(dup):
                conv.weight[dead + 2 * i + 1] = conv.weight[dead + 2 * i]
                conv.bias[dead + 2 * i + 1] = conv.bias[dead + 2 * i]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stage(self.stem(x)).mean((2, 3)))


def inputs(b: int = 1, size: int = 32) -> Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(3))


def recorded(model: nn.Module, x: Tensor, layer: str) -> tuple[Tensor, Tensor]:
    """``layer``'s output and the logits of one plain no-grad pass."""
    store: dict[str, Tensor] = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, o: store.update(a=o.detach()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return store["a"], logits


def slow_scorecam(model: nn.Module, x: Tensor, layer: str, coefs=(1.0,)) -> Tensor:
    """One pass per channel and coefficient; the straightforward definition."""
    acts, logits = recorded(model, x, layer)
    cls = logits.argmax(1)
    maps = []
    for b in range(x.shape[0]):
        weights = []
        for c in range(acts.shape[1]):
            up = F.interpolate(acts[b : b + 1, c : c + 1], size=x.shape[-2:], mode="bilinear")
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            with torch.no_grad():
                probs = [model(x[b : b + 1] * mask * k).softmax(1)[0, cls[b]] for k in coefs]
            weights.append(sum(probs) / len(probs))
        raw = (torch.stack(weights)[:, None, None] * acts[b]).sum(0)
        maps.append(to_input_space(raw[None, None], tuple(x.shape[-2:]))[0, 0])
    return torch.stack(maps)


def slow_ablation(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    module = dict(model.named_modules())[layer]
    acts, logits = recorded(model, x, layer)
    cls = logits.argmax(1)
    maps = []
    for b in range(x.shape[0]):
        y = logits[b, cls[b]]
        weights = []
        for c in range(acts.shape[1]):

            def zero(_m, _i, o, c=c):
                o = o.clone()
                o[:, c] = 0
                return o

            h = module.register_forward_hook(zero)
            with torch.no_grad():
                yc = model(x[b : b + 1])[0, cls[b]]
            h.remove()
            weights.append((y - yc) / y)
        raw = (torch.stack(weights)[:, None, None] * acts[b]).sum(0)
        maps.append(to_input_space(raw[None, None], tuple(x.shape[-2:]))[0, 0])
    return torch.stack(maps)


def test_scorecam_equals_slow_reference_with_dead_and_duplicate_channels() -> None:
    model, x = TinyNet(dead=3, dup=2).eval(), inputs(2)
    reference = slow_scorecam(model, x, "stage")
    totals: list[int] = []
    got = explain(
        model, x, "scorecam", "stage", method_options={"progress": lambda d, t: totals.append(t)}
    ).maps["scorecam"]
    assert (got - reference).abs().max() <= 1e-4
    # 12 channels, 3 dead, 2 duplicate pairs: 7 distinct masks per image + one shared zero input
    assert totals[-1] == 2 * 7 + 1


def test_iscam_equals_slow_reference() -> None:
    model, x = TinyNet().eval(), inputs(1)
    reference = slow_scorecam(model, x, "stage", coefs=(1 / 3, 2 / 3, 1.0))
    got = explain(model, x, "iscam", "stage", method_options={"num_samples": 3}).maps["iscam"]
    assert (got - reference).abs().max() <= 1e-4


def test_skipping_does_not_change_output() -> None:
    # the same model with and without dead/duplicate channels differs only in those channels;
    # compare the optimised path with and without dedup via the slow reference on both.
    model, x = TinyNet(dead=2, dup=3).eval(), inputs(1)
    fast = explain(model, x, "scorecam", "stage", method_options={"optimize": False})
    assert (fast.maps["scorecam"] - slow_scorecam(model, x, "stage")).abs().max() <= 1e-5


def test_chunked_equals_unchunked() -> None:
    model, x = TinyNet(dead=1).eval(), inputs(2)
    for method in ["scorecam", "ablationcam", "sscam"]:
        opts = {"optimize": False, **(FEW if method == "sscam" else {})}
        one = explain(model, x, method, "stage", method_options={**opts, "batch_size": 1})
        big = explain(model, x, method, "stage", method_options={**opts, "batch_size": 1000})
        assert (one.maps[method] - big.maps[method]).abs().max() <= 1e-5, method


def test_ablation_equals_slow_reference_and_skips_the_prefix() -> None:
    model, x = TinyNet(dead=2).eval(), inputs(2)
    calls = []
    handle = model.stem[0].register_forward_hook(lambda *_: calls.append(1))
    got = explain(model, x, "ablationcam", "stage", method_options={"batch_size": 4})
    handle.remove()
    assert (got.maps["ablationcam"] - slow_ablation(model, x, "stage")).abs().max() <= 1e-4
    # one explain forward + one recording pass per image; none per ablated chunk
    assert len(calls) == 1 + 2


class ConcatNet(TinyNet):
    """The head reads the stem output next to the layer output (a skip the prefix replay cannot
    broadcast: torch.cat), so ablation must fall back to full passes."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(12 + 8, 5)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stem(x)
        a = self.stage(s)
        return self.head(torch.cat([a.mean((2, 3)), s.mean((2, 3))], 1))


def test_ablation_falls_back_when_the_suffix_reads_the_prefix(caplog) -> None:
    model, x = ConcatNet().eval(), inputs(1)
    with caplog.at_level(logging.INFO, logger="camscope.perturbation.ablation"):
        got = explain(model, x, "ablationcam", "stage").maps["ablationcam"]
    assert "falling back" in caplog.text
    assert (got - slow_ablation(model, x, "stage")).abs().max() <= 1e-4


def test_faster_scorecam_with_all_channels_is_scorecam_and_subset_differs() -> None:
    model, x = TinyNet().eval(), inputs(1)
    full = explain(
        model, x, ["scorecam", "faster-scorecam"], "stage", method_options={"num_channels": 12}
    )
    assert torch.allclose(full.maps["scorecam"], full.maps["faster-scorecam"], atol=1e-6)
    part = explain(model, x, "faster-scorecam", "stage", method_options={"num_channels": 3})
    acts = {}
    h = model.stage.register_forward_hook(lambda _m, _i, o: acts.update(a=o))
    with torch.no_grad():
        model(x)
    h.remove()
    top = acts["a"][0].flatten(1).var(1, unbiased=False).topk(3).indices
    # the raw map is a combination of the three highest-variance channels only
    a = acts["a"][0].flatten(1)
    coef = torch.linalg.lstsq(a[top].T, part.raw["faster-scorecam"][0].flatten()[:, None]).solution
    assert torch.allclose(
        a[top].T @ coef, part.raw["faster-scorecam"][0].flatten()[:, None], atol=1e-5
    )


def test_smoothgradcampp_without_noise_is_gradcampp() -> None:
    model, x = TinyNet().eval(), inputs(2)
    opts = {"noise_level": 0.0, "num_samples": 3}
    res = explain(model, x, ["smoothgradcam++", "gradcam++"], "stem", method_options=opts)
    assert torch.allclose(res.raw["smoothgradcam++"], res.raw["gradcam++"], atol=1e-5)


@pytest.mark.parametrize("method", ["sscam", "smoothgradcam++"])
def test_noisy_methods_are_deterministic_under_a_seed(method: str) -> None:
    model, x = TinyNet().eval(), inputs(1)
    layer = "stem" if method == "smoothgradcam++" else "stage"  # stage gradients are constant
    run = lambda seed: explain(  # noqa: E731
        model, x, method, layer, method_options={**FEW, "seed": seed}
    ).raw[method]
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize("method", PERTURBATION)
def test_no_nan_with_dead_channels_and_smoothing(method: str) -> None:
    model, x = TinyNet(dead=11).eval(), inputs(1)  # one live channel
    opts = FEW if method in ("sscam", "iscam", "smoothgradcam++") else {}
    for kwargs in ({}, {"eigen_smooth": True}, {"aug_smooth": True}):
        res = explain(model, x, method, "stage", method_options=opts, **kwargs)
        m = res.maps[method]
        assert m.shape == (1, 32, 32) and bool(torch.isfinite(m).all()), kwargs
        assert float(m.min()) >= 0 and float(m.max()) <= 1


def test_all_dead_layer_gives_zero_map_not_nan() -> None:
    model, x = TinyNet(dead=12).eval(), inputs(1)
    res = explain(model, x, ["scorecam", "ablationcam"], "stage")
    for m in res.maps.values():
        assert torch.equal(m, torch.zeros_like(m))


def test_agrees_with_pytorch_grad_cam_and_torchcam() -> None:
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    model, x = TinyNet(channels=16).eval(), inputs(1)
    ours = explain(
        model, x, "scorecam", "stage", targets=2, method_options={"score": "channel-softmax"}
    )
    with ScoreCAM(model=model, target_layers=[model.stage]) as cam:
        theirs = torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(2)]))
    with TorchcamScoreCAM(model, "stage", input_shape=(3, 32, 32)) as extractor:
        with torch.no_grad():
            scores = model(x)
        tc = extractor(class_idx=2, scores=scores)[0]
    tc = to_input_space(tc[None], (32, 32))[0]

    def r(a: Tensor, b: Tensor) -> float:
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return float(a @ b / (a.norm() * b.norm()))

    assert r(ours.maps["scorecam"][0], theirs[0]) >= 0.99
    assert r(ours.maps["scorecam"][0], tc[0]) >= 0.99


def pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.flatten().double() - a.mean(), b.flatten().double() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def test_align_corners_reproduces_pytorch_grad_cam_masks() -> None:
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = TinyNet(channels=16).eval(), inputs(1)
    with ScoreCAM(model=model, target_layers=[model.stage]) as cam:
        theirs = torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(2)]))[0]
    opts = {"score": "channel-softmax"}
    default = explain(model, x, "scorecam", "stage", targets=2, method_options=opts)
    aligned = explain(
        model, x, "scorecam", "stage", targets=2, method_options={**opts, "align_corners": True}
    )
    r_aligned = pearson(aligned.maps["scorecam"][0], theirs)
    assert r_aligned >= 0.9999
    assert r_aligned > pearson(default.maps["scorecam"][0], theirs)


def test_optimized_passes_equal_the_model_and_bfloat16_is_close() -> None:
    model, x = TinyNet(dead=2, dup=2).eval(), inputs(2)
    plain = explain(model, x, "scorecam", "stage", method_options={"optimize": False})
    fast = explain(model, x, "scorecam", "stage")
    half = explain(model, x, "scorecam", "stage", method_options={"precision": "bfloat16"})
    assert (fast.maps["scorecam"] - plain.maps["scorecam"]).abs().max() <= 1e-4
    for i in range(2):
        assert pearson(half.maps["scorecam"][i], plain.maps["scorecam"][i]) >= 0.99
    with pytest.raises(UsageError, match="precision"):
        explain(model, x, "scorecam", "stage", method_options={"precision": "fp8"})


def test_bad_options_and_callable_targets_are_usage_errors() -> None:
    model, x = TinyNet().eval(), inputs(1)
    with pytest.raises(UsageError, match="batch_sise"):
        explain(model, x, "scorecam", "stage", method_options={"batch_sise": 4})
    with pytest.raises(UsageError, match="batch_size"):
        explain(model, x, "scorecam", "stage", method_options={"batch_size": 0})
    # -O batch_size=abc reaches the method as text: the message names the type and the value
    with pytest.raises(UsageError, match="'batch_size' must be an int, got str 'abc'") as err:
        explain(model, x, "scorecam", "stage", method_options={"batch_size": "abc"})
    assert "<class" not in str(err.value)
    with pytest.raises(UsageError, match="callable target"):
        explain(model, x, "ablationcam", "stage", targets=lambda out: out[:, 0])


@pytest.mark.parametrize("method", ["scorecam", "gradcam"])
def test_several_classes_per_image_equal_separate_calls(method: str) -> None:
    model, x = TinyNet(dead=2, dup=2).eval(), inputs(2)
    classes = [[1, 3, 1], [0, 4, 2]]
    totals: list[int] = []
    opts = {"progress": lambda d, t: totals.append(t)}
    joint = explain(model, x, method, "stage", targets=classes, method_options=opts)
    assert joint.maps[method].shape == (2, 3, 32, 32)
    joint_total = totals[-1] if totals else None
    for k in range(3):
        single = explain(
            model, x, method, "stage", targets=[row[k] for row in classes], method_options=opts
        )
        assert (joint.maps[method][:, k] - single.maps[method]).abs().max() <= 1e-5
    if method == "scorecam":  # one set of masked passes serves all three classes
        assert joint_total == totals[-1] == 2 * 8 + 1  # 12 channels: 2 dead, 2 duplicates


def test_memory_per_row_is_measured_on_one_plain_pass(monkeypatch) -> None:
    from camscope.perturbation import masked as perturbation
    from camscope.perturbation.fastpath import FastForward

    model, x = TinyNet(dead=3).eval(), inputs(1)
    seen: list[int] = []
    real = perturbation.batch_size_for
    monkeypatch.setattr(
        perturbation,
        "batch_size_for",
        lambda per_row, device, limit, cap: (
            seen.append(per_row) or real(per_row, device, limit, cap)
        ),
    )
    explain(model, x, "scorecam", "stage")
    fast = FastForward(model, x.device).module()  # a copy like the one the call made
    with perturbation.output_bytes(fast) as used, torch.no_grad():
        fast(torch.zeros_like(x).contiguous(memory_format=torch.channels_last))
    assert seen == [used[0] + 3 * x.numel() * x.element_size()]


def test_whole_model_passes_run_in_batches_of_four_on_cpu() -> None:
    sizes: list[int] = []
    model, x = TinyNet().eval(), inputs(1)  # 12 distinct masks: 4 + 4 + 4
    model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    explain(model, x, "scorecam", "stage", method_options={"optimize": False})
    assert sizes[-3:] == [4, 4, 4]
    assert perturbation_batch(1 << 20, limit=100) == 4 and perturbation_batch(1 << 20, 3) == 3


def perturbation_batch(per_row: int, limit: int) -> int:
    from camscope.perturbation.masked import CPU_CAP_WHOLE, batch_size_for

    return batch_size_for(per_row, torch.device("cpu"), limit, CPU_CAP_WHOLE)

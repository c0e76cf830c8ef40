"""Reference values worked out by hand for every built-in method (captum style).

The networks and their layer values (P0, P1, A0, A1, head weights) are in ``tests/nets.py``; each
test states the gradients and weights it derives from them and compares ``raw`` (signed, layer
resolution) to 1e-5, and ``maps`` where the normalisation is easy to do by hand.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from nets import A0, A1, P0, P1, FlatNet, GapNet, GuidedNet, TwinNet, ramp, t
from torch import Tensor

from camscope import explain, list_methods
from camscope.errors import UnsupportedModelError

ATOL = 1e-5


def close(actual: Tensor, expected: Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=0)


def expected_map(raw: Tensor, size: tuple[int, int] = (4, 4)) -> Tensor:
    """ReLU, bilinear upsampling (align_corners=False), min-max to [0, 1]: what maps promise."""
    up = F.interpolate(raw.clamp(min=0)[None, None], size=size, mode="bilinear")[0, 0]
    return (up - up.min()) / (up.max() - up.min())


def reference_tests() -> dict[str, list[str]]:
    """Method -> the tests (``file::function``) marked ``@pytest.mark.reference(method, ...)``
    anywhere under tests/, read from the sources (the mark must sit on a test function)."""
    found: dict[str, list[str]] = {}
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and ast.unparse(decorator.func) == "pytest.mark.reference"
                ):
                    for arg in decorator.args:
                        assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                        found.setdefault(arg.value, []).append(f"{path.name}::{node.name}")
    return found


def test_every_registered_method_has_a_hand_worked_value_test() -> None:
    # a method joins the registry with at least one test that asserts values worked out by hand
    # (marked @pytest.mark.reference("name")); a mark naming no registered method is a typo
    covered = reference_tests()
    missing = sorted(set(list_methods()) - set(covered))
    assert not missing, f"registered methods without a hand-worked value test: {missing}"
    unknown = sorted(set(covered) - set(list_methods()))
    assert not unknown, f"reference marks name unregistered methods: {unknown}"


# --- GAP + linear head, layer = ReLU output ---------------------------------------------------
# score_c = sum_k W[c, k] mean(A_k) + b_c, so dscore_c / dA_k[i, j] = W[c, k] / 9 everywhere.
# Class 0 (W = [1, -1]): gradients g0 = 1/9, g1 = -1/9.

GAP_CLASS0 = ["gradcam", "hirescam", "xgradcam", "counterfactual", "layercam", "gradcam++", "cam"]


@pytest.fixture(scope="module")
def gap_class0():
    return explain(GapNet(), ramp(), GAP_CLASS0, layer="relu", targets=0)


@pytest.mark.reference("gradcam")
def test_gradcam_gap_head(gap_class0) -> None:
    # alpha = (1/9, -1/9); L = (A0 - A1) / 9
    expected = t([[-11, -9, -7], [0, 4, 7], [11, 13, 15]]) / 9
    close(gap_class0.raw["gradcam"][0], expected)
    # corners of the 4x4 map equal the 3x3 corners (align_corners=False clamps at the border):
    # ReLU gives 0 top-left / top-right and the maximum 15/9 bottom-right; the minimum is 0.
    m = gap_class0.maps["gradcam"][0]
    assert m.shape == (4, 4)
    assert float(m[0, 0]) == 0.0 and float(m[0, 3]) == 0.0
    assert float(m[3, 3]) == pytest.approx(1.0, abs=1e-6)
    close(m, expected_map(expected))


@pytest.mark.reference("hirescam", "xgradcam")
def test_hirescam_and_xgradcam_equal_gradcam_for_uniform_gradients(gap_class0) -> None:
    # HiResCAM: sum_k g_k * A_k with constant g_k = Grad-CAM. XGrad-CAM: w_k = sum(A g)/sum(A) = g_k.
    expected = t([[-11, -9, -7], [0, 4, 7], [11, 13, 15]]) / 9
    close(gap_class0.raw["hirescam"][0], expected)
    close(gap_class0.raw["xgradcam"][0], expected)


@pytest.mark.reference("counterfactual")
def test_counterfactual_gap_head(gap_class0) -> None:
    # negated weights (-1/9, 1/9): L = (A1 - A0) / 9; after ReLU the top rows light up
    expected = t([[11, 9, 7], [0, -4, -7], [-11, -13, -15]]) / 9
    close(gap_class0.raw["counterfactual"][0], expected)
    m = gap_class0.maps["counterfactual"][0]
    assert float(m[0, 0]) == pytest.approx(1.0, abs=1e-6)  # 11/9 is the maximum
    assert float(m[3, 3]) == 0.0
    close(m, expected_map(expected))


@pytest.mark.reference("layercam")
def test_layercam_gap_head(gap_class0) -> None:
    # ReLU(g) = (1/9, 0): L = A0 / 9
    close(gap_class0.raw["layercam"][0], t(A0) / 9)


@pytest.mark.reference("gradcam++")
def test_gradcampp_gap_head(gap_class0) -> None:
    # alpha_ij = g^2 / (2 g^2 + S_k g^3), so alpha_ij * ReLU(g) = g / (2 + S_k g) for g > 0.
    # channel 0: g = 1/9, S0 = 54 -> (1/9) / (2 + 6) = 1/72 per position, 9 positions -> w0 = 1/8
    # channel 1: g = -1/9 -> ReLU(g) = 0 -> w1 = 0.   L = A0 / 8
    close(gap_class0.raw["gradcam++"][0], t(A0) / 8)


@pytest.mark.reference("cam")
def test_cam_equals_gradcam_on_gap_head(gap_class0) -> None:
    # CAM: L = sum_k W[0, k] A_k = A0 - A1, i.e. Z = 9 times Grad-CAM (Selvaraju et al., Sec. 3.1)
    cam = gap_class0.raw["cam"][0]
    close(cam, t(A0) - t(A1))
    close(cam, 9 * gap_class0.raw["gradcam"][0])
    close(gap_class0.maps["cam"], gap_class0.maps["gradcam"])


def test_top1_and_logits_of_gap_net() -> None:
    # logits = [23/9, 25/18, 67/18]: top-1 is class 2 (W = [1/2, 1/2]), L = (A0 + A1) / 18
    res = explain(GapNet(), ramp(), "gradcam", layer="relu")
    close(res.logits[0], t([23 / 9, 25 / 18, 67 / 18]))
    assert res.targets.tolist() == [2]
    close(res.scores, t([67 / 18]))
    close(res.raw["gradcam"][0], t([[11, 9, 7], [6, 6, 7], [11, 13, 15]]) / 18)
    probs = torch.tensor([23 / 9, 25 / 18, 67 / 18]).softmax(0)
    close(res.probabilities, probs[2:3])


def test_gradients_through_relu_at_the_conv_layer() -> None:
    # layer = conv (before the ReLU): dscore_0 / dP_k = W[0, k] / 9 * [P_k > 0].
    # P0 > 0 at 6 positions, P1 > 0 at 5: alpha = (6/81, -5/81), L = (6 P0 - 5 P1) / 81.
    res = explain(GapNet(), ramp(), ["gradcam", "hirescam"], layer="conv", targets=0)
    expected = t([[-85, -63, -41], [3, 25, 47], [91, 113, 135]]) / 81
    close(res.raw["gradcam"][0], expected)
    # HiResCAM: sum_k g_k * P_k = (ReLU(P0) - ReLU(P1)) / 9
    close(res.raw["hirescam"][0], (t(A0) - t(A1)) / 9)
    assert torch.equal(t(P0).clamp(min=0), t(A0)) and torch.equal(t(P1).clamp(min=0), t(A1))


# --- flatten + linear head: position-dependent gradients ---------------------------------------
# score_0 = sum(G0 * A0) + sum(G1 * A1) = (5 + 22 + 15) + (9 - 3) = 48, score_1 = -48 -> top-1 is 0.
# The gradient at the ReLU output is the weight itself: g_0 = G0, g_1 = G1 (FLAT_G0/FLAT_G1).

FLAT = ["gradcam", "hirescam", "layercam", "xgradcam", "gradcam++", "counterfactual"]


@pytest.fixture(scope="module")
def flat_class0():
    return explain(FlatNet(), ramp(), FLAT, layer="relu", targets="top1")


def test_flat_head_scores(flat_class0) -> None:
    assert flat_class0.targets.tolist() == [0]
    close(flat_class0.scores, t([48.0]))


def test_gradcam_flat_head(flat_class0) -> None:
    # alpha = (mean G0, mean G1) = (4/9, -1/9): L = (4 A0 - A1) / 9
    expected = t([[-11, -9, -7], [9, 19, 28], [44, 52, 60]]) / 9
    close(flat_class0.raw["gradcam"][0], expected)
    close(flat_class0.raw["counterfactual"][0], -expected)
    close(flat_class0.maps["gradcam"][0], expected_map(expected))


def test_hirescam_flat_head(flat_class0) -> None:
    # G0*A0 = [[0,0,0],[0,5,0],[22,0,15]], G1*A1 = [[0,9,0],[-3,0,0],[0,0,0]]
    expected = t([[0, 9, 0], [-3, 5, 0], [22, 0, 15]])
    close(flat_class0.raw["hirescam"][0], expected)
    close(flat_class0.maps["hirescam"][0], expected_map(expected))


def test_layercam_flat_head(flat_class0) -> None:
    # ReLU(G) keeps (0,0),(1,1),(2,0),(2,2) of channel 0 and (0,1),(1,2) of channel 1 (A1 = 0 there)
    close(flat_class0.raw["layercam"][0], t([[0, 9, 0], [0, 5, 0], [22, 0, 15]]))


def test_xgradcam_flat_head(flat_class0) -> None:
    # w_k = sum(G_k A_k) / sum(A_k): w0 = 42/54 = 7/9, w1 = 6/31
    close(flat_class0.raw["xgradcam"][0], 7 / 9 * t(A0) + 6 / 31 * t(A1))


def test_gradcampp_flat_head(flat_class0) -> None:
    # alpha * ReLU(g) = g / (2 + S g) for g > 0, zero otherwise (also where g = 0: alpha := 0).
    # channel 0 (S = 54): g = 1 at three positions -> 3/56, g = 2 once -> 2/110 = 1/55
    # channel 1 (S = 31): g = 1 at two positions -> 2/33
    w0, w1 = 3 / 56 + 1 / 55, 2 / 33
    close(flat_class0.raw["gradcam++"][0], w0 * t(A0) + w1 * t(A1))


def test_flat_head_second_class() -> None:
    # class 1 has weights -G: Grad-CAM flips sign; Layer-CAM keeps ReLU(-G) * A, which is nonzero
    # only at (1, 0) of channel 1 (-G1 = 1 there, A1 = 3).
    res = explain(FlatNet(), ramp(), ["gradcam", "layercam"], layer="relu", targets=1)
    close(res.raw["gradcam"][0], -t([[-11, -9, -7], [9, 19, 28], [44, 52, 60]]) / 9)
    close(res.raw["layercam"][0], t([[0, 0, 0], [3, 0, 0], [0, 0, 0]]))


# --- principal components ----------------------------------------------------------------------
# TwinNet: A1 = 2 A0, so every position is (a, 2a). Centred rows (a - 6)(1, 2): v1 = (1, 2)/sqrt(5)
# and the projection is sqrt(5) (A0 - 6), the sign chosen to correlate with the channel sum 3 A0.

A0_CENTRED = t([[-6, -6, -6], [-3, -1, 1], [5, 7, 9]])  # A0 - mean(A0)


@pytest.mark.reference("eigencam")
def test_eigencam_obvious_component() -> None:
    res = explain(TwinNet(), ramp(), "eigencam", layer="relu", targets=0)
    close(res.raw["eigencam"][0], math.sqrt(5) * A0_CENTRED)
    close(res.maps["eigencam"][0], expected_map(A0_CENTRED))


def test_eigencam_is_class_agnostic() -> None:
    res = explain(TwinNet(), ramp(), "eigencam", layer="relu", targets="topk:2")
    close(res.raw["eigencam"][0, 0], res.raw["eigencam"][0, 1])


@pytest.mark.reference("eigengradcam")
def test_eigengradcam_obvious_component_and_sign() -> None:
    # gradients (W[c, 0] / 9, W[c, 1] / 9); class 0 (W = [1, -1]): G*A = (A0/9, -2 A0/9), rows
    # (a/9)(1, -2) -> projection +-sqrt(5)/9 (A0 - 6); the channel sum -A0/9 fixes the sign: minus.
    res = explain(TwinNet(), ramp(), "eigengradcam", layer="relu", targets="topk:2")
    order = res.targets[0].tolist()
    by_class = {c: res.raw["eigengradcam"][0, i] for i, c in enumerate(order)}
    close(by_class[0], -math.sqrt(5) / 9 * A0_CENTRED)
    # class 1 (W = [-1, 1]): G*A = (-A0/9, 2 A0/9), channel sum +A0/9 -> plus
    close(by_class[1], math.sqrt(5) / 9 * A0_CENTRED)


def test_eigen_smooth_gradcam_is_first_component() -> None:
    # Grad-CAM contributions for class 1: alpha = (-1/9, 1/9) -> (-A0/9, 2 A0/9): same as above.
    plain = explain(TwinNet(), ramp(), "gradcam", layer="relu", targets=1)
    close(plain.raw["gradcam"][0], t(A0) / 9)  # -A0/9 + 2 A0/9
    smooth = explain(TwinNet(), ramp(), "gradcam", layer="relu", targets=1, eigen_smooth=True)
    close(smooth.raw["gradcam"][0], math.sqrt(5) / 9 * A0_CENTRED)
    m = smooth.maps["gradcam"][0]
    assert m.shape == (4, 4) and float(m.min()) == 0.0 and float(m.max()) == pytest.approx(1.0)


def test_eigencam_matches_numpy_svd_on_unequal_channels() -> None:
    # an independent implementation of the documented rule (centre, first right singular vector,
    # sign by correlation with the channel sum) on GapNet's A0, A1
    import numpy as np

    rows = np.stack([np.array(A0).ravel(), np.array(A1).ravel()], axis=1)
    centred = rows - rows.mean(0)
    v = np.linalg.svd(centred)[2][0]
    proj = centred @ v
    ref = rows.sum(1) - rows.sum(1).mean()
    proj = proj if (proj * ref).sum() >= 0 else -proj
    res = explain(GapNet(), ramp(), "eigencam", layer="relu", targets=0)
    close(res.raw["eigencam"][0], torch.tensor(proj.reshape(3, 3), dtype=torch.float32), 1e-4)


# --- guided backpropagation --------------------------------------------------------------------
# GuidedNet, x = [[-1.5, -0.5], [0.5, 1.5]]: channel 0 = x (alive on the bottom row), channel 1 =
# -x (alive on the top row). dscore/dx = sum_k conv_k * [pre_k > 0] * V_k:
#   plain:  top row -V1[0] = [-5, -6], bottom row V0[1] = [3, -4]
#   guided: negative gradients are stopped at the ReLU: bottom row [3, 0]; top row unchanged.


@pytest.mark.reference("guided-backprop")
def test_guided_backprop_differs_from_plain_gradient() -> None:
    net, x = GuidedNet(), GuidedNet.input()
    x_leaf = x.clone().requires_grad_()
    (plain,) = torch.autograd.grad(net(x_leaf).sum(), x_leaf)
    close(plain[0, 0], t([[-5, -6], [3, -4]]))  # sanity check of the hand derivation
    # one output: a single-logit head, whose class 1 is the logit itself (class 0: -logit)
    res = explain(net, x, "guided-backprop", layer="relu", targets=1)
    raw = res.raw["guided-backprop"]
    assert raw.shape == (1, 1, 2, 2)  # (B, input channels, H, W)
    close(raw[0, 0], t([[-5, -6], [3, 0]]))
    # maps: |.| max over input channels, min-max: [[5, 6], [3, 0]] / 6
    close(res.maps["guided-backprop"][0], t([[5 / 6, 1.0], [0.5, 0.0]]))
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.reference("guided-gradcam")
def test_guided_gradcam() -> None:
    # Grad-CAM at the ReLU: A0 = [[0, 0], [.5, 1.5]], A1 = [[1.5, .5], [0, 0]], alpha = (mean V0,
    # mean V1) = (-0.5, 6.5): L = [[9.75, 3.25], [-0.25, -0.75]]; same size as the input, so the
    # normalised map is [[1, 1/3], [0, 0]] and Guided Grad-CAM = guided * that = [[-5, -2], [0, 0]].
    res = explain(
        GuidedNet(), GuidedNet.input(), ["gradcam", "guided-gradcam"], layer="relu", targets=1
    )
    close(res.raw["gradcam"][0], t([[9.75, 3.25], [-0.25, -0.75]]))
    close(res.maps["gradcam"][0], t([[1.0, 1 / 3], [0.0, 0.0]]))
    close(res.raw["guided-gradcam"][0, 0], t([[-5.0, -2.0], [0.0, 0.0]]))
    close(res.maps["guided-gradcam"][0], t([[1.0, 0.4], [0.0, 0.0]]))


# --- CAM premise checks ------------------------------------------------------------------------


def test_cam_rejects_non_gap_head() -> None:
    with pytest.raises(UnsupportedModelError, match=r"classifier expects 18") as err:
        explain(FlatNet(), ramp(), "cam", layer="relu", targets=0)
    assert "'relu'" in str(err.value)


def test_cam_rejects_layer_that_is_not_right_before_pooling() -> None:
    # at the conv layer mean(P0) = 5 != mean(A0) = 6, so the scores are not reproduced
    with pytest.raises(UnsupportedModelError, match="global average pooling"):
        explain(GapNet(), ramp(), "cam", layer="conv", targets=0)


def test_cam_rejects_callable_target() -> None:
    with pytest.raises(UnsupportedModelError, match="callable"):
        explain(GapNet(), ramp(), "cam", layer="relu", targets=lambda out: out[:, 0])

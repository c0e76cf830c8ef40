"""Hand-worked values for Finer-CAM, Grad-CAM element-wise, KPCA-CAM, Shapley-CAM, Seg-Eigen-CAM,
Random-CAM, FEM and Sobel-CAM (captum style).

The networks and their layer values (A0, A1, P0, head weights) are in ``tests/nets.py``; each test
states the gradients and weights it derives from them and compares ``raw`` (signed, layer
resolution) to 1e-5. Where a value needs a transcendental function (a softmax, tanh), the formula
is derived by hand and evaluated with :mod:`math` in the test.
"""

from __future__ import annotations

import math

import pytest
import torch
from nets import A0, A1, GAP_B, GAP_W, FlatNet, GapNet, TwinNet, TwoChannelConv, ramp, t
from torch import Tensor, nn

from camscope import explain
from camscope.errors import TargetError, UsageError
from camscope.methods.seg_eigencam import larger_extreme_positive

ATOL = 1e-5
GAP_LOGITS = [23 / 9, 25 / 18, 67 / 18]  # GapNet on ramp(): see nets.GapNet
MEANS = [6.0, 31 / 9]  # spatial means of A0 and A1


def close(actual: Tensor, expected: Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=0)


def combo(w0: float, w1: float) -> Tensor:
    """``w0 A0 + w1 A1``: a channel-weighted map of the shared two-channel layer."""
    return w0 * t(A0) + w1 * t(A1)


def gap_weight(row: list[float]) -> tuple[float, float]:
    """Grad-CAM weights of a GapNet score whose logit weights are ``row``: d/dA_k = row_k / 9."""
    return row[0] / 9, row[1] / 9


# --- Finer-CAM ---------------------------------------------------------------------------------
# GapNet logits y = [23/9, 25/18, 67/18] = [46, 25, 67] / 18. For class 0 both other classes are
# 21/18 away (a tie, broken by the lower index); for class 2, class 0 is nearest (21/18) and class
# 1 next (42/18). Finer-CAM's Grad-CAM of s = y_c - alpha mean(y_d) has weights
# (W_c - alpha mean(W_d)) / 9, since every score is W mean(A) + b.


@pytest.mark.reference("finercam")
def test_finercam_gap_head_defaults() -> None:
    # class 0, T = min(3, 2 others) = 2, alpha = 1: W0 - (W1 + W2) / 2 = (1, -1) - (-0.25, 1.25)
    res = explain(GapNet(), ramp(), ["finercam", "gradcam"], layer="relu", targets=0)
    close(res.raw["finercam"][0], combo(*gap_weight([1.25, -2.25])))
    # the comparison changed the map: Grad-CAM alone is (A0 - A1) / 9
    close(res.raw["gradcam"][0], combo(1 / 9, -1 / 9))


@pytest.mark.reference("finercam")
def test_finercam_nearest_class_and_alpha() -> None:
    net, x = GapNet(), ramp()
    one = {"finer_references": 1}
    # class 0, T = 1: the tie goes to class 1 -> W0 - W1 = (2, -3)
    res = explain(net, x, "finercam", layer="relu", targets=0, method_options=one)
    close(res.raw["finercam"][0], combo(*gap_weight([2.0, -3.0])))
    # top-1 is class 2, whose nearest class is 0: W2 - W0 = (-0.5, 1.5); alpha 0.6: (-0.1, 1.1)
    res = explain(net, x, "finercam", layer="relu", method_options=one)
    assert res.targets.tolist() == [2]
    close(res.raw["finercam"][0], combo(*gap_weight([-0.5, 1.5])))
    res = explain(net, x, "finercam", layer="relu", method_options={**one, "finer_alpha": 0.6})
    close(res.raw["finercam"][0], combo(*gap_weight([-0.1, 1.1])))
    # alpha = 0 is the base method itself
    res = explain(net, x, ["finercam", "gradcam"], layer="relu", method_options={"finer_alpha": 0})
    close(res.raw["finercam"], res.raw["gradcam"])


@pytest.mark.reference("finercam")
def test_finercam_softmax_weighting_of_pytorch_grad_cam() -> None:
    # s = sum_t q_t (y0 - y_t) with q = softmax over the compared classes (y1, y2) (the 1e-9 of
    # the peer's denominator is below the tolerance). q does not depend on y0, and
    # dq1/dy1 = q1 q2 = -dq1/dy2, so with d_t = y0 - y_t:
    #   ds/dy0 = 1, ds/dy1 = -q1 + q1 q2 (d1 - d2), ds/dy2 = -q2 - q1 q2 (d1 - d2)
    # and d1 - d2 = y2 - y1 = 7/3.
    q1 = 1 / (1 + math.exp(7 / 3))
    q2 = 1 - q1
    dy = [1.0, -q1 + q1 * q2 * 7 / 3, -q2 - q1 * q2 * 7 / 3]
    row = [sum(d * GAP_W[j][k] for j, d in enumerate(dy)) for k in range(2)]
    opts = {"finer_weighting": "softmax"}
    res = explain(GapNet(), ramp(), "finercam", layer="relu", targets=0, method_options=opts)
    close(res.raw["finercam"][0], combo(*gap_weight(row)))


@pytest.mark.reference("finercam")
def test_finercam_on_other_base_methods() -> None:
    # FlatNet has two classes with logits (48, -48): the only other class of class 0 is class 1,
    # whose weights are -G, so s = y0 - y1 has gradient 2 G: every base map doubles.
    net, x = FlatNet(), ramp()
    for base in ("gradcam", "layercam", "hirescam", "xgradcam", "gradcam++"):
        res = explain(net, x, ["finercam", base], "relu", 0, method_options={"finer_base": base})
        if base == "gradcam++":
            # Grad-CAM++ weights g / (2 + S g) are not linear in g: with g -> 2g, 2/(2 + 2 S g)
            # per position. Channel 0 (S = 54): g = 1 three times -> 3 * 2/110, g = 2 -> 4/218;
            # channel 1 (S = 31): g = 1 twice -> 2 * 2/64.
            close(res.raw["finercam"][0], combo(6 / 110 + 4 / 218, 4 / 64))
        else:
            close(res.raw["finercam"][0], 2 * res.raw[base][0])


def test_finercam_needs_class_targets_and_valid_options() -> None:
    net, x = GapNet(), ramp()
    with pytest.raises(TargetError, match=r"finercam.*callable target"):
        explain(net, x, "finercam", layer="relu", targets=lambda out: out[:, 0], strict=True)
    skipped = explain(net, x, ["gradcam", "finercam"], layer="relu", targets=lambda o: o[:, 0])
    assert "finercam" in skipped.skipped and "gradcam" in skipped.maps
    for bad, match in (
        ({"finer_base": "scorecam"}, "finer_base.*'gradcam'"),
        ({"finer_references": 0}, "finer_references.*>= 1"),
        ({"finer_weighting": "median"}, "finer_weighting"),
        ({"finer_alpha": "big"}, "finer_alpha"),
    ):
        with pytest.raises(UsageError, match=match):
            explain(net, x, "finercam", layer="relu", method_options=bad, strict=True)


# --- Grad-CAM element-wise ---------------------------------------------------------------------


@pytest.mark.reference("gradcam-elementwise")
def test_gradcam_elementwise_flat_head() -> None:
    # FlatNet class 0: g = (G0, G1). G0*A0 = [[0,0,0],[0,5,0],[22,0,15]],
    # G1*A1 = [[0,9,0],[-3,0,0],[0,0,0]]: the ReLU drops the -3 that HiResCAM keeps
    res = explain(FlatNet(), ramp(), ["gradcam-elementwise", "hirescam"], layer="relu", targets=0)
    close(res.raw["gradcam-elementwise"][0], t([[0, 9, 0], [0, 5, 0], [22, 0, 15]]))
    close(res.raw["hirescam"][0], t([[0, 9, 0], [-3, 5, 0], [22, 0, 15]]))


# --- KPCA-CAM ----------------------------------------------------------------------------------


class PairNet(nn.Module):
    """1x1 conv (weights 1 and 2, no bias) on a 1 x 2 input -> GAP -> linear(2 -> 2).

    With ``x = [0, 2]`` the layer is channel 0 = [0, 2], channel 1 = [0, 4]: two positions whose
    centred channel vectors are -(1, 2) and +(1, 2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(t([1.0, 2.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(t([[1.0, 0.0], [0.0, 1.0]]))
            self.fc.bias.zero_()

    @staticmethod
    def input() -> Tensor:
        return t([0.0, 2.0]).view(1, 1, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.mark.reference("kpcacam")
def test_kpcacam_sigmoid_kernel_two_positions() -> None:
    # rows a1 = -(1, 2), a2 = (1, 2); gamma = 1/C = 1/2: a1.a1 = a2.a2 = 5, a1.a2 = -5, so
    # K = [[tanh 3.5, tanh(-1.5)], [tanh(-1.5), tanh 3.5]]. Centring a 2 x 2 kernel leaves
    # c [[1, -1], [-1, 1]] with c = (K11 + K22 - 2 K12) / 4 = (tanh 3.5 + tanh 1.5) / 2: the
    # eigenvalue 2c, the eigenvector (1, -1)/sqrt(2), the projections sqrt(c) (1, -1). The sign:
    # the channel sums (0, 6) rise from left to right, so the map is sqrt(c) (-1, 1).
    c = (math.tanh(3.5) + math.tanh(1.5)) / 2
    res = explain(PairNet(), PairNet.input(), "kpcacam", layer="conv", targets=0)
    close(res.raw["kpcacam"][0], math.sqrt(c) * t([[-1.0, 1.0]]))


@pytest.mark.reference("kpcacam")
def test_kpcacam_linear_kernel_is_eigencam() -> None:
    # TwinNet: every position is (a, 2a); the linear kernel gives PCA, sqrt(5) (A0 - 6)
    opts = {"kpca_kernel": "linear"}
    res = explain(TwinNet(), ramp(), ["kpcacam", "eigencam"], "relu", 0, method_options=opts)
    close(res.raw["kpcacam"][0], math.sqrt(5) * (t(A0) - 6), 1e-4)
    close(res.raw["kpcacam"], res.raw["eigencam"], 1e-4)


def test_kpcacam_kernels_match_scikit_learn() -> None:
    # scikit-learn's KernelPCA (what the paper's implementation uses) as the oracle on GapNet's
    # layer, after the same centring of the activations and camscope's sign rule
    from sklearn.decomposition import KernelPCA

    rows = torch.stack([t(A0).flatten(), t(A1).flatten()], 1).double()
    centred = (rows - rows.mean(0)).numpy()
    reference = (rows.sum(1) - rows.sum(1).mean()).numpy()
    for kernel, gamma in (("sigmoid", None), ("rbf", 0.01), ("poly", 0.02), ("cosine", None)):
        theirs = KernelPCA(n_components=1, kernel=kernel, gamma=gamma).fit_transform(centred)[:, 0]
        theirs = theirs if (theirs * reference).sum() >= 0 else -theirs
        opts = {"kpca_kernel": kernel, **({"kpca_gamma": gamma} if gamma else {})}
        res = explain(GapNet(), ramp(), "kpcacam", layer="relu", targets=0, method_options=opts)
        close(res.raw["kpcacam"][0], torch.from_numpy(theirs).view(3, 3), 1e-4)


# --- Shapley-CAM -------------------------------------------------------------------------------


class SquareNet(nn.Module):
    """conv -> ReLU -> square -> GAP -> linear(2 -> 3) with GapNet's head: y = W mean(A^2) + b.

    dy_c/dA_k = 2 W_ck A_k / 9 and the Hessian is diagonal, 2 W_ck / 9, so H A = dy/dA: the
    second-order term halves the gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = TwoChannelConv()
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.fc.weight.copy_(t(GAP_W))
            self.fc.bias.copy_(t(GAP_B))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).square().mean(dim=(2, 3)))


@pytest.mark.reference("shapleycam")
def test_shapleycam_quadratic_head_logit_utility() -> None:
    # class 0 (W = (1, -1)): g - H A / 2 = g / 2 = W_0k A_k / 9, whose spatial means are
    # w = (6/9, -(31/9)/9) = (2/3, -31/81); Grad-CAM has twice these weights
    opts = {"shapley_utility": "logit"}
    res = explain(SquareNet(), ramp(), ["shapleycam", "gradcam"], "relu", 0, method_options=opts)
    close(res.raw["shapleycam"][0], combo(2 / 3, -31 / 81), 1e-4)
    close(res.raw["gradcam"][0], combo(4 / 3, -62 / 81), 1e-4)


@pytest.mark.reference("shapleycam")
def test_shapleycam_rest_utility_on_a_linear_head() -> None:
    # GapNet, class 0, u = y0 + log softmax(y)_0 = 2 y0 - LSE(y). With dy_m/dA_k = W_mk / 9:
    #   du/dA_k = (2 W_0 - W^T p)_k / 9 at every position;
    #   H A = -(1/81) W^T (diag p - p p^T) W S, S = (54, 31) the channel sums, the same
    #   everywhere, so w_k = du/dA_k + (1/18) [W^T (diag p - p p^T) W m]_k, m = S / 9.
    z = [math.exp(v) for v in GAP_LOGITS]
    p = [v / sum(z) for v in z]
    w_t_p = [sum(p[m] * GAP_W[m][k] for m in range(3)) for k in range(2)]
    wm = [sum(GAP_W[m][k] * MEANS[k] for k in range(2)) for m in range(3)]  # W m
    sigma_wm = [p[m] * wm[m] - p[m] * sum(p[j] * wm[j] for j in range(3)) for m in range(3)]
    curvature = [sum(GAP_W[m][k] * sigma_wm[m] for m in range(3)) for k in range(2)]
    w = [(2 * GAP_W[0][k] - w_t_p[k]) / 9 + curvature[k] / 18 for k in range(2)]
    res = explain(GapNet(), ramp(), ["shapleycam", "gradcam"], layer="relu", targets=0)
    close(res.raw["shapleycam"][0], combo(*w))
    # on the logit, a linear head has no curvature: Shapley-CAM is Grad-CAM
    logit = explain(
        GapNet(),
        ramp(),
        ["shapleycam", "gradcam"],
        "relu",
        0,
        method_options={"shapley_utility": "logit"},
    )
    close(logit.raw["shapleycam"], logit.raw["gradcam"])


def test_shapleycam_top_k_equals_single_targets_and_callable_targets() -> None:
    net, x = SquareNet(), ramp()
    both = explain(net, x, "shapleycam", "relu", [[0, 2]]).raw["shapleycam"][0]
    for i, c in enumerate((0, 2)):
        close(both[i], explain(net, x, "shapleycam", "relu", c).raw["shapleycam"][0])
    # the logit utility explains a callable target's score; ReST needs class logits
    opts = {"shapley_utility": "logit"}
    by_callable = explain(net, x, "shapleycam", "relu", lambda o: o[:, 0], method_options=opts)
    close(by_callable.raw["shapleycam"][0], combo(2 / 3, -31 / 81), 1e-4)
    with pytest.raises(TargetError, match="shapleycam"):
        explain(net, x, "shapleycam", "relu", lambda o: o[:, 0], strict=True)


# --- Seg-Eigen-CAM -----------------------------------------------------------------------------


@pytest.mark.reference("seg-eigencam")
def test_seg_eigencam_obvious_component() -> None:
    # TwinNet, gradients (W[c, 0] / 9, W[c, 1] / 9) with W = [[1, -1], [-1, 1]]: |g| = (1/9, 1/9)
    # for both classes, |g| A = (A0, 2 A0) / 9, rows (a/9)(1, 2): projection +-sqrt(5)/9 (A0 - 6).
    # A0 - 6 spans [-6, 9]: the maximum is the larger extreme, so the sign is +, for both classes
    # (Eigen-Grad-CAM's channel-sum rule gives class 0 the other sign).
    res = explain(TwinNet(), ramp(), ["seg-eigencam", "eigengradcam"], "relu", "topk:2")
    expected = math.sqrt(5) / 9 * (t(A0) - 6)
    for i in range(2):
        close(res.raw["seg-eigencam"][0, i], expected)
    assert float((res.raw["eigengradcam"][0] * expected).sum(dim=(-2, -1)).min()) < 0


@pytest.mark.reference("seg-eigencam")
def test_seg_eigencam_sign_rule() -> None:
    # Eq. 13: a map whose minimum is larger in magnitude than its maximum is flipped
    maps = t([[[-3.0, 1.0], [0.0, 2.0]], [[3.0, -1.0], [0.0, -2.0]], [[-2.0, 2.0], [0.0, 0.0]]])
    flipped = larger_extreme_positive(maps)
    close(flipped[0], t([[3.0, -1.0], [0.0, -2.0]]))
    close(flipped[1], maps[1])
    close(flipped[2], maps[2])  # a tie keeps the sign


# --- Random-CAM --------------------------------------------------------------------------------


@pytest.mark.reference("randomcam")
def test_randomcam_weights_are_the_seeded_draw() -> None:
    # w = 2 U - 1 with U the first two numbers of a CPU generator seeded with the option
    for seed in (0, 7):
        u = torch.rand(2, generator=torch.Generator().manual_seed(seed))
        w = (2 * u - 1).tolist()
        assert all(-1 <= v < 1 for v in w)
        res = explain(
            GapNet(), ramp(2), "randomcam", "relu", "topk:2", method_options={"seed": seed}
        )
        for b in range(2):
            for k in range(2):  # the same map for every image and class
                close(res.raw["randomcam"][b, k], combo(*w))
    zero = explain(GapNet(), ramp(), "randomcam", "relu", 0).raw["randomcam"]
    seven = explain(GapNet(), ramp(), "randomcam", "relu", 0, method_options={"seed": 7})
    assert not torch.allclose(zero, seven.raw["randomcam"])


# --- FEM ---------------------------------------------------------------------------------------
# GapNet's layer, k = 1/2: A0 has mean 6 and variance 274/9 (threshold 6 + sqrt(274/9)/2 ~ 8.76:
# the bottom row 11, 13, 15); A1 has mean 31/9 and variance 1388/81 (threshold ~5.51: the top row
# 11, 9, 7). Each mask covers 3 of the 9 positions.


@pytest.mark.reference("fem")
def test_fem_k_sigma_masks_by_hand() -> None:
    opts = {"fem_k": 0.5}
    res = explain(GapNet(), ramp(), "fem", layer="relu", targets="topk:2", method_options=opts)
    # paper: sum_k mean(A_k) M_k = 6 (bottom row) + 31/9 (top row)
    expected = t([[31 / 9] * 3, [0.0] * 3, [6.0] * 3])
    close(res.raw["fem"][0, 0], expected)
    close(res.raw["fem"][0, 1], expected)
    # pytorch-grad-cam: sum_k mean(M_k) A_k = (A0 + A1) / 3
    opts = {**opts, "fem_weighting": "activations"}
    res = explain(GapNet(), ramp(), "fem", layer="relu", targets=0, method_options=opts)
    close(res.raw["fem"][0], combo(1 / 3, 1 / 3))
    # the default k = 2 marks nothing here (no value is 2 sigma above its channel's mean)
    close(explain(GapNet(), ramp(), "fem", layer="relu").raw["fem"][0], torch.zeros(3, 3))


# --- Sobel-CAM ---------------------------------------------------------------------------------


@pytest.mark.reference("sobelcam")
def test_sobelcam_on_the_ramp() -> None:
    # x[i, j] = 4 i + j, borders reflected without repeating the edge: the x response is
    # 4 * (x[., j+1] - x[., j-1]) = 8 on the inner columns and 0 on the outer ones, the y response
    # 4 * 8 = 32 on the inner rows, 0 on the outer ones; the map is half their absolute sum
    expected = t([[0, 4, 4, 0], [16, 20, 20, 16], [16, 20, 20, 16], [0, 4, 4, 0]])
    res = explain(GapNet(), ramp(), "sobelcam", layer="relu", targets=0)
    close(res.raw["sobelcam"][0], expected)
    # RGB input: the grey image weighs R by 0.299
    rgb = torch.cat([ramp(), torch.zeros(1, 2, 4, 4)], dim=1)
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    close(explain(net, rgb, "sobelcam", "1", 0).raw["sobelcam"][0], 0.299 * expected)

"""Reference values worked out by hand for the transformer methods, on the one-block ViT of
``tests/nets.py`` (``hand_vit``).

Tokens (class token first, then the patches in row-major order on the 2x2 grid), with
``x = (x[0], x[1])``::

    cls (1, 0);  p1 (2, 0);  p2 (-1, ln 2);  p3 (1, ln 3);  p4 (0.5, ln 2)

Attention logits are ``x_i[0] * x_j[1]``, so the class token's row is
``softmax(0, 0, ln 2, ln 3, ln 2) = (1, 1, 2, 3, 2) / 9``. Values ``v_j = (x_j[0], 0)``, the
projection is the identity, the MLP outputs zero, every norm is the identity and the head reads the
class token's first channel: ``y_0 = 1 + (1 + 2 - 2 + 3 + 1) / 9 = 14/9 = -y_1``.
"""

from __future__ import annotations

import math

import pytest
import torch
from nets import hand_vit, hand_vit_input, t

from camscope import explain

ATOL = 1e-5
METHODS = ["legrad", "attention-rollout", "transformer-attribution", "vit-reciprocam"]


@pytest.fixture(scope="module")
def class0():
    return explain(hand_vit(), hand_vit_input(), METHODS, targets=0)


@pytest.fixture(scope="module")
def class1():
    return explain(hand_vit(), hand_vit_input(), METHODS, targets=1)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.float(), expected, atol=ATOL, rtol=0)


def test_the_hand_net_gives_the_hand_logits(class0) -> None:
    close(class0.logits[0], t([14 / 9, -14 / 9]))
    assert class0.layer == "blocks.0.norm1"


@pytest.mark.reference("transformer-attribution")
def test_transformer_attribution(class0, class1) -> None:
    # One block: R = I + relu(grad * A), averaged over the single head. Only the class token's
    # row reaches the score, with dy_0/dA_0j = v_j[0] = (1, 2, -1, 1, 0.5), so
    # grad * A = (1, 2, -2, 3, 1) / 9 and the patch columns of R's class row are (2, 0, 3, 1) / 9.
    close(class0.raw["transformer-attribution"][0], t([[2, 0], [3, 1]]) / 9)
    # class 1 has the opposite gradient: relu(-(1, 2, -2, 3, 1) / 9) keeps p2 only
    close(class1.raw["transformer-attribution"][0], t([[0, 2], [0, 0]]) / 9)


@pytest.mark.reference("legrad")
def test_legrad(class0, class1) -> None:
    # s = head(mean of the 5 output tokens): ds_0/dA_ij = v_j[0] / 5 for every query row i, so
    # relu, mean over rows and the one head: (2, 0, 1, 0.5) / 5 on the patches
    close(class0.raw["legrad"][0], t([[2, 0], [1, 0.5]]) / 5)
    close(class1.raw["legrad"][0], t([[0, 1], [0, 0]]) / 5)


@pytest.mark.reference("attention-rollout")
def test_attention_rollout(class0, class1) -> None:
    # (A + I) / 2 for the one block: the class row's patch columns are A_0j / 2 = (1, 2, 3, 2) / 18
    expected = t([[1, 2], [3, 2]]) / 18
    close(class0.raw["attention-rollout"][0], expected)
    close(class1.raw["attention-rollout"][0], expected)  # not class-specific


def _recipro(masks: list[float]) -> float:
    """p_0 for one masked copy: the class token and residual stay, patch j is scaled by m_j in
    the attention's input, so the class row weights are (1, 1, 2^m2, 3^m3, 2^m4), the values
    (1, 2 m1, -m2, m3, 0.5 m4), y_0 = 1 + weighted mean, and p_0 = sigmoid(2 y_0)."""
    m1, m2, m3, m4 = masks
    weights = [1.0, 1.0, 2**m2, 3**m3, 2**m4]
    values = [1.0, 2 * m1, -m2, m3, 0.5 * m4]
    y0 = 1 + sum(w * v for w, v in zip(weights, values)) / sum(weights)
    return 1 / (1 + math.exp(-2 * y0))


@pytest.mark.reference("vit-reciprocam")
def test_vit_reciprocam(class0, class1) -> None:
    # copy (i, j) scales the patches by the 3x3 Gaussian centred on (i, j): on a 2x2 grid the
    # centre gets 1/4, the two edge neighbours 1/8 and the diagonal one 1/16
    c, e, d = 1 / 4, 1 / 8, 1 / 16
    masks = {(0, 0): [c, e, e, d], (0, 1): [e, c, d, e], (1, 0): [e, d, c, e], (1, 1): [d, e, e, c]}
    expected = torch.zeros(2, 2)
    for (i, j), m in masks.items():
        expected[i, j] = _recipro(m)
    # (0, 0): 0.92976, (0, 1): 0.91733, (1, 0): 0.92959, (1, 1): 0.92216
    close(class0.raw["vit-reciprocam"][0], expected)
    close(class1.raw["vit-reciprocam"][0], 1 - expected)  # two classes: p_1 = 1 - p_0
    # the normalised map is the min-max of the upsampled probabilities: its peak is at (0, 0)
    assert float(class0.maps["vit-reciprocam"][0, 0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_every_map_is_the_normalised_raw_map(class0) -> None:
    for method in METHODS:
        maps = class0.maps[method][0]
        assert maps.shape == (4, 4)
        assert float(maps.min()) == 0.0 and float(maps.max()) == pytest.approx(1.0, abs=1e-6)

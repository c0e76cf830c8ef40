"""Faithfulness metrics on toy "models" whose scores can be computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from camscope.errors import UsageError
from camscope.metrics import faithfulness as fm


def mean_prob(x: torch.Tensor) -> torch.Tensor:
    """Two-class toy model: softmax gives p(class 0) = mean of channel 0 (values in (0, 1))."""
    p = x[:, 0].flatten(1).mean(1).clamp(1e-6, 1 - 1e-6)
    return torch.stack([p.log(), (1 - p).log()], dim=1)


def sum_logit(x: torch.Tensor) -> torch.Tensor:
    """Logit of class 0 = sum of channel 0; class 1 = 0."""
    s = x[:, 0].flatten(1).sum(1)
    return torch.stack([s, torch.zeros_like(s)], dim=1)


X = torch.tensor([[[0.4, 0.3], [0.2, 0.1]]]).expand(1, 3, 2, 2).clone()
MAP = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])  # ranks: (1,1), (1,0), (0,1), (0,0)
CLS = torch.tensor([0])


def test_deletion_curve_and_auc_by_hand():
    curve = fm.deletion_insertion(
        mean_prob, X, MAP, CLS, mode="deletion", steps=4, substrate_kind="zero"
    )
    # remove 0.1, then 0.2, then 0.3, then 0.4 from a mean of 4 pixels
    assert curve[0].tolist() == pytest.approx([0.25, 0.225, 0.175, 0.1, 0.0], abs=1e-6)
    assert float(fm.auc(curve)[0]) == pytest.approx(1.25 / 8, abs=1e-6)


def test_insertion_curve_by_hand_and_step_rounding():
    curve = fm.deletion_insertion(
        mean_prob, X, MAP, CLS, mode="insertion", steps=4, substrate_kind="zero"
    )
    assert curve[0].tolist() == pytest.approx([0.0, 0.025, 0.075, 0.15, 0.25], abs=1e-6)
    # 3 steps over 4 pixels: round(4/3)=1, round(8/3)=3 pixels
    assert fm.step_counts(4, 3).tolist() == [0, 1, 3, 4]
    curve = fm.deletion_insertion(
        mean_prob, X, MAP, CLS, mode="deletion", steps=3, substrate_kind="zero", batch_size=2
    )
    assert curve[0].tolist() == pytest.approx([0.25, 0.225, 0.1, 0.0], abs=1e-6)


def test_ranking_ties_keep_raster_order():
    ranks = fm.pixel_ranks(torch.tensor([[[1.0, 1.0], [2.0, 1.0]]]))
    assert ranks.tolist() == [[[1, 2], [0, 3]]]


def test_auc_trapezoid():
    assert float(fm.auc(torch.tensor([[1.0, 0.5, 0.0]]))[0]) == 0.5
    assert float(fm.auc(torch.tensor([[0.0, 1.0]]))[0]) == 0.5
    with pytest.raises(UsageError):
        fm.auc(torch.tensor([[1.0]]))


def test_average_drop_increase_and_win_by_hand():
    full = torch.tensor([0.8, 0.5, 0.4])
    masked = torch.tensor([0.4, 0.6, 0.4])
    assert fm.average_drop(full, masked).tolist() == pytest.approx([50.0, 0.0, 0.0])
    assert fm.increase_in_confidence(full, masked).tolist() == [False, True, False]
    win = fm.win_share({"a": torch.tensor([10.0, -5.0, 3.0]), "b": torch.tensor([20.0, -1.0, 3.0])})
    assert win["a"].tolist() == [1.0, 1.0, 0.5] and win["b"].tolist() == [0.0, 0.0, 0.5]


def test_explanation_input_multiplies_towards_baseline():
    x = torch.full((1, 3, 2, 2), 2.0)
    m = torch.tensor([[[1.0, 0.5], [0.0, 0.25]]])
    out = fm.explanation_input(x, m, baseline=-1.0)  # -1 + m * 3
    assert out[0, 0].tolist() == [[2.0, 0.5], [-1.0, -0.25]]


def test_average_drop_pipeline_on_toy_model():
    probs = fm.class_probability(mean_prob, X, CLS)
    masked = fm.class_probability(mean_prob, fm.explanation_input(X, MAP, 0.0), CLS)
    # mean(0.4*0.1, 0.3*0.2, 0.2*0.3, 0.1*0.4) = 0.05; drop = 100 * 0.2 / 0.25
    assert float(fm.average_drop(probs, masked)[0]) == pytest.approx(80.0, rel=1e-4)


def test_spearman_matches_scipy_with_ties():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 40), generator=gen).float()
    b = torch.randn(3, 40, generator=gen)
    ours = fm.spearman(a, b)
    for i in range(3):
        ref = stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic
        assert float(ours[i]) == pytest.approx(ref, abs=1e-5)
    assert fm.rank(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert float(fm.spearman(torch.ones(1, 5), torch.arange(5.0)[None])) == 0.0


def test_occlusion_map_and_its_rank_correlation():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = torch.arange(16.0).reshape(4, 4)
    occ = fm.occlusion_map(sum_logit, x, CLS, patch=2, stride=2, baseline=0.0)
    # each 2x2 block's drop is the sum of its pixels
    assert occ[0].tolist() == [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]
    maps = x[:, 0] / 15
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]]) / 15
    assert torch.allclose(fm.pool_to_grid(maps, 2, 2)[0], expected)
    assert float(fm.occlusion_spearman(maps, occ, 2, 2)[0]) == pytest.approx(1.0)
    assert float(fm.occlusion_spearman(1 - maps, occ, 2, 2)[0]) == pytest.approx(-1.0)
    # a grid whose last patch would overhang is shifted to touch the border
    assert fm.occlusion_grid((5, 5), 2, 2) == ([0, 2, 3], [0, 2, 3])


def test_noisy_linear_imputation_single_hole_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 6.0], [7.0, 8.0, 9.0]]).expand(1, 1, 3, 3)
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    out = fm.noisy_linear_impute(x, removed, noise=0.0)
    expected = (2 + 4 + 6 + 8) / 6 + (1 + 3 + 7 + 9) / 12
    assert float(out[0, 0, 1, 1]) == pytest.approx(expected)
    kept = ~removed[0]
    assert torch.equal(out[0, 0][kept], x[0, 0][kept])
    noisy = fm.noisy_linear_impute(x, removed, noise=0.5, seed=3)
    assert float(noisy[0, 0, 1, 1]) != pytest.approx(expected)
    assert torch.equal(noisy[0, 0][kept], x[0, 0][kept])


def test_imputation_renormalises_the_weights_at_the_border_by_hand():
    x = torch.tensor([[0.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).expand(1, 1, 3, 3)
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = True
    out = fm.noisy_linear_impute(x, removed, noise=0.0)
    # neighbours of the corner: 2 and 4 (weight 1/6 each), 5 (1/12); weights sum to 5/12
    assert float(out[0, 0, 0, 0]) == pytest.approx((2 / 6 + 4 / 6 + 5 / 12) / (5 / 12))


def test_imputation_reproduces_a_constant_image_with_a_large_hole():
    x = torch.full((1, 3, 16, 16), 0.7)
    removed = torch.zeros(1, 16, 16, dtype=torch.bool)
    removed[0, 2:14, 3:15] = True
    assert torch.allclose(fm.noisy_linear_impute(x, removed, noise=0.0), x)


def test_road_morf_below_lerf_when_the_map_points_at_the_signal():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, :4] = 0.9  # signal in the top half
    x[0, 0, 4:] = 0.1
    good_map = x[:, 0].clone()
    morf = fm.road(mean_prob, x, good_map, CLS, order="morf", fractions=(0.5,), noise=0.0)
    lerf = fm.road(mean_prob, x, good_map, CLS, order="lerf", fractions=(0.5,), noise=0.0)
    assert morf.shape == (1, 1)
    assert float(morf[0, 0]) < 0.5 < float(lerf[0, 0])  # removing the signal lowers p
    with pytest.raises(UsageError):
        fm.road(mean_prob, x, good_map, CLS, order="sideways")


def test_substrates_and_blur():
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fm.substrate(x, "zero"), torch.zeros_like(x))
    assert torch.allclose(fm.substrate(x, "mean")[0, :, 5, 5], x.mean(dim=(2, 3))[0])
    const = torch.full((1, 3, 12, 12), 0.3)
    assert torch.allclose(fm.gaussian_blur(const), const)  # weights sum to one
    assert float(fm.gaussian_blur(x).std()) < float(x.std())
    with pytest.raises(UsageError, match="substrate"):
        fm.substrate(x, "noise")


def test_scores_are_chunked_consistently():
    x = torch.rand(5, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    a = fm.scores(mean_prob, x, torch.zeros(5, dtype=torch.long), batch_size=2)
    b = fm.scores(mean_prob, x, torch.zeros(5, dtype=torch.long), batch_size=64)
    assert torch.allclose(a, b)
    assert np.allclose(a.numpy(), x[:, 0].flatten(1).mean(1).numpy(), atol=1e-6)


def test_a_single_logit_model_scores_its_two_classes_by_sigmoid():
    """One logit z = ln 3: class 1 has p = sigmoid(z) = 0.75 and score +z, class 0 has 0.25 and
    -z (a softmax over the one column gave 1.0 to both)."""
    z = float(np.log(3.0))
    inputs = torch.full((2, 1), z)
    classes = torch.tensor([1, 0])
    identity = lambda x: x  # noqa: E731 - the inputs are the logits
    torch.testing.assert_close(
        fm.class_probability(identity, inputs, classes), torch.tensor([0.75, 0.25])
    )
    torch.testing.assert_close(
        fm.scores(identity, inputs, classes, probability=False), torch.tensor([z, -z])
    )

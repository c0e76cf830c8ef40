"""The leaderboard's statistics, checked by hand (issue 16.7): Wilson intervals, bootstrap
intervals, the tie rule of Win %, low-confidence images, bold ties and the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from camscope.evaluation.summary import (
    best_entries,
    bootstrap_interval,
    interval,
    summarise,
    verdict,
    wilson_interval,
    win_shares,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # p = 1/2, z^2/n = 0.9604: centre (0.5 + 0.4802) / 1.9604 = 0.5,
        # half = 1.96 / 1.9604 * sqrt(0.0625 + 0.0600) = 0.3500
        (2, 4, 0.1500, 0.8500),
        # p = 0: centre = half = 0.4802 / 1.9604 = 0.2449 -> [0, 0.4899]
        (0, 4, 0.0, 0.4899),
        (4, 4, 0.5101, 1.0),
        # p = 0.7, z^2/n = 0.3841: centre 0.8921 / 1.3841 = 0.6445,
        # half = 1.96 / 1.3841 * sqrt(0.021 + 0.0096) = 0.2477
        (7, 10, 0.3968, 0.8922),
    ],
)
def test_wilson_interval_by_hand(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_hit_or_miss_columns_stay_inside_0_100_at_small_n():
    # the case: 50.0 +- 56.6 with the normal approximation at n = 4
    stats = interval([0.0, 100.0, 0.0, 100.0], binary=True)
    assert stats["interval"] == "wilson"
    assert (stats["low"], stats["high"]) == pytest.approx((15.0, 85.0), abs=0.01)
    all_hits = interval([100.0] * 3, binary=True)
    assert all_hits["high"] == 100.0 and 0 < all_hits["low"] < 100


def test_bootstrap_interval_is_bounded_seeded_and_close_to_normal_for_large_n():
    values = [0.0, 0.0, 0.0, 10.0]
    low, high = bootstrap_interval(values)
    assert 0.0 <= low <= np.mean(values) <= high <= 10.0
    assert bootstrap_interval(values) == (low, high)  # seeded: the same report twice
    assert bootstrap_interval([3.0] * 5) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bootstrap_interval([1.0]))
    big = list(np.arange(100.0))
    half = 1.96 * np.std(big, ddof=1) / 10
    b_low, b_high = bootstrap_interval(big)
    assert b_low == pytest.approx(49.5 - half, abs=1.0) and b_high == pytest.approx(
        49.5 + half, abs=1.0
    )
    # a non-binary column of a percent metric takes the bootstrap, also with values 0 and 100
    assert interval([0.0, 50.0, 100.0], binary=True)["interval"] == "bootstrap"


def test_ties_within_tolerance_share_the_win():
    assert win_shares({"a": 1.0, "b": 1.0 + 1e-6, "c": 2.0}) == {"a": 0.5, "b": 0.5, "c": 0.0}
    assert win_shares({"a": 1.0, "b": 1.5}) == {"a": 1.0, "b": 0.0}


def _rows(method, values, **extra):
    return [
        {"id": f"i{k}", "method": method, "layer": "bn2", **{key: v[k] for key, v in extra.items()},
         **values[k]}
        for k in range(len(values))
    ]  # fmt: skip


def test_identical_maps_share_wins_and_low_confidence_images_are_reported_apart():
    # gradcam and xgradcam: the same map, float noise in the drop; p_target of i3 is 1e-5
    drops = [5.0, 7.0, 3.0, -4130.0]
    p = [0.5, 0.4, 0.3, 1e-5]
    rows = []
    for m, noise in (("gradcam", 0.0), ("xgradcam", 3e-6), ("eigencam", None)):
        for k in range(4):
            d = drops[k] + noise if noise is not None else drops[k] + 1.0
            rows.append({"id": f"i{k}", "method": m, "layer": "bn2", "p_target": p[k],
                         "signed_drop": d, "avg_drop": max(0.0, d), "increase": 0.0})  # fmt: skip
    summary = summarise(rows)
    board = summary["leaderboard"]
    assert board["gradcam"]["win"]["mean"] == pytest.approx(50.0)
    assert board["xgradcam"]["win"]["mean"] == pytest.approx(50.0)
    assert board["eigencam"]["win"]["mean"] == 0.0
    assert board["gradcam"]["avg_drop"]["n"] == 3  # i3 left out
    assert board["gradcam"]["avg_drop"]["mean"] == pytest.approx(5.0)
    assert summary["low_confidence"] == {
        "threshold": 1e-3, "images": 1, "columns": ["avg_drop", "increase", "win"],
    }  # fmt: skip


def _summary(stats: dict[str, tuple[float, float, float]], key="energy", higher=True, **more):
    return {
        "leaderboard": {
            name: {key: {"mean": m, "low": lo, "high": hi, "n": 10}}
            for name, (m, lo, hi) in stats.items()
        },
        "columns": [key],
        "column_info": {key: {"title": "Energy pointing %", "higher_is_better": higher}},
        **more,
    }


def test_every_tied_best_value_is_bold():
    s = _summary({"a": (0.1100001, 0.1, 0.12), "b": (0.11, 0.1, 0.12), "c": (0.2, 0.1, 0.3)},
                 key="deletion", higher=False)  # fmt: skip
    assert best_entries(s, "deletion") == {"a", "b"}


def test_verdict_names_a_clear_winner_only_when_intervals_do_not_overlap():
    clear = _summary({"gradcam": (47.0, 43.0, 51.0), "layercam": (62.0, 58.0, 66.0)})
    (line,) = verdict(clear)
    assert line.startswith("Localizes best (Energy pointing % ↑): layercam, 62.0 [58.0, 66.0]")
    assert "clear of every other" in line
    close = _summary({"gradcam": (60.0, 55.0, 65.0), "layercam": (62.0, 58.0, 66.0)})
    (line,) = verdict(close)
    assert "no clear winner; layercam leads" in line and "gradcam overlap" in line
    tied = _summary({"cam": (62.0, 58.0, 66.0), "gradcam": (62.0, 58.0, 66.0)})
    assert "no clear winner; cam and gradcam tie" in verdict(tied)[0]
    sanity = {"layers": {"bn2": {"passed": {"gradcam": True, "eigencam": False}}}}
    lines = verdict(_summary({"gradcam": (1.0, 0.5, 1.5)}, sanity=sanity))
    assert "only gradcam was evaluated (1.0 [0.5, 1.5]); nothing to compare" in lines[0]
    assert lines[-1].startswith("Fails the sanity check at bn2: eigencam")

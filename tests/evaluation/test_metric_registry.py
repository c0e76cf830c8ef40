"""The metric registry: what each family writes, a new family end to end, one win rule, floors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from nets import imagenet_sized

from camscope.cli.evaluate import parse_metrics
from camscope.core import registry as method_registry
from camscope.data.synthetic import SyntheticBenchmark
from camscope.errors import UsageError
from camscope.evaluation import CountingForward, EvalConfig, evaluate_batch, to_input
from camscope.evaluation import registry as reg
from camscope.evaluation.report import leaderboard_rows
from camscope.evaluation.summary import best_entries, summarise, verdict, win_shares
from camscope.metrics import faithfulness as fm
from camscope.models import ModelSpec

SPEC = ModelSpec("tiny", input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
BASE = {"id", "method", "layer", "asked_layer", "objects", "target", "target_name", "top1",
        "top1_correct", "p_target"}  # fmt: skip


@pytest.fixture(scope="module")
def batch():
    model = imagenet_sized(batch_norm=True)
    bench = SyntheticBenchmark(12, size=32, seed=0)
    samples = [next(s for s in bench if len(s.objects) == 2), bench[0]]
    inputs = [to_input(s, SPEC) for s in samples]
    return model, samples, torch.stack([t for t, _ in inputs]), [sc for _, sc in inputs]


def _rows(batch, metrics, **more):
    model, samples, x, scales = batch
    config = EvalConfig(methods=["gradcam", "eigencam"], metrics=metrics, steps=2,
                        occlusion_patch=16, occlusion_stride=16, robustness_samples=1, **more)  # fmt: skip
    return evaluate_batch(model, SPEC, samples, x, scales, config, "4", CountingForward(model))[0]


@pytest.mark.parametrize("family", [f for f in reg.metric_families() if f.scope == "image"],
                         ids=lambda f: f.name)  # fmt: skip
def test_each_family_writes_exactly_what_it_declares(batch, family) -> None:
    rows = _rows(batch, [family.name])
    written = set().union(*rows) - BASE
    declared = {c.key for c in family.columns if c.key != "win"} | set(family.extras)
    assert written == declared
    assert all(c.family == family.name for c in family.columns)


def test_the_registry_lists_the_families_in_leaderboard_order() -> None:
    assert reg.family_names() == ["loc", "pointing", "energy", "discrimination", "drop",
                                  "deletion", "insertion", "road", "occlusion", "sanity",
                                  "robustness"]  # fmt: skip
    assert reg.default_families() == reg.family_names()[:7]
    assert EvalConfig(methods=["gradcam"]).metrics == reg.default_families()
    assert (
        parse_metrics("all") == reg.family_names() and parse_metrics(None) == reg.default_families()
    )
    assert reg.metric_column("increase").binary and reg.metric_column("avg_drop").relative
    assert [c.key for c in reg.metric_columns()][:2] == ["loc_error_top1", "loc_error_top5"]


def test_unknown_families_and_clashing_registrations_are_refused() -> None:
    with pytest.raises(UsageError, match=r"--metrics: unknown family \['speed'\].*choose from loc"):
        parse_metrics("loc,speed")
    with pytest.raises(UsageError, match="unknown family"):
        EvalConfig(methods=["gradcam"], metrics=["speed"]).validate()
    with pytest.raises(ValueError, match="registered twice"):
        reg.register_metric("loc", summary="again", order=1)(lambda ctx: {})
    with pytest.raises(ValueError, match=r"row key\(s\) \['iou'\] already registered"):
        reg.register_metric(
            "mine", summary="x", order=1, columns=[reg.MetricColumn("iou", "IoU", True)]
        )(lambda ctx: {})
    assert "mine" not in reg.family_names()


@pytest.fixture
def peak_family():
    @reg.register_metric(
        "peak",
        order=45,
        summary="the explained class's map maximum over its mean",
        columns=[reg.MetricColumn("peak_ratio", "Peak / mean", True)],
    )
    def peak(ctx):
        out = ctx.empty()
        for m in ctx.methods:
            ratio = ctx.maps[m].flatten(1).amax(1) / ctx.maps[m].flatten(1).mean(1)
            for i, row in enumerate(out[m]):
                row["peak_ratio"] = float(ratio[i])
        return out

    yield peak
    reg._FAMILIES.pop("peak")


def test_a_new_family_is_one_registration(batch, peak_family) -> None:
    """Registered in one place, it is a --metrics choice, a help line, a docs row, a row value and
    a leaderboard column (after energy, by its order)."""
    assert parse_metrics("peak,energy") == ["peak", "energy"]
    assert any(line.startswith("  peak ") for line in reg.help_lines())
    assert "| `peak` | Peak / mean | `peak_ratio` | higher ↑ | bootstrap |" in reg.markdown_table()
    rows = _rows(batch, ["energy", "peak"])
    model, _, x, _ = batch
    from camscope import explain

    for row in rows:
        i = 0 if row["id"] == rows[0]["id"] else 1
        own = explain(model, x[i : i + 1], row["method"], "4", targets=row["target"]).maps
        a = own[row["method"]][0]
        assert row["peak_ratio"] == pytest.approx(float(a.max() / a.mean()), rel=1e-4)
    summary = summarise(rows)
    assert summary["columns"] == ["energy", "peak_ratio"]
    assert summary["column_info"]["peak_ratio"] == {
        "key": "peak_ratio", "title": "Peak / mean", "higher_is_better": True, "family": "peak",
        "percent": False, "binary": False,
    }  # fmt: skip


def test_one_win_rule_for_the_metric_and_the_summary() -> None:
    """Ties within 0.01 points of the lowest signed drop share the win, in both places."""
    for drops, shares in (
        ({"a": 1.0, "b": 1.009, "c": 1.02}, [0.5, 0.5, 0.0]),
        ({"a": 1.0, "b": 1.011}, [1.0, 0.0]),
        ({"a": -3.0, "b": -3.0, "c": -3.0}, [1 / 3, 1 / 3, 1 / 3]),
    ):
        assert list(win_shares(drops).values()) == pytest.approx(shares)
        tensors = {k: torch.tensor([v], dtype=torch.float64) for k, v in drops.items()}
        assert [float(v[0]) for v in fm.win_share(tensors).values()] == pytest.approx(shares)


def test_a_baseline_method_is_the_floor_never_the_best(monkeypatch) -> None:
    spec = method_registry.lookup("eigencam")
    monkeypatch.setitem(method_registry._METHODS, "eigencam",
                        dataclasses.replace(spec, family="baseline"))  # fmt: skip
    energy = {"gradcam": [40.0, 44.0, 42.0, 41.0], "eigencam": [43.0, 45.0, 44.0, 47.0],
              "layercam": [10.0, 12.0, 11.0, 9.0]}  # fmt: skip
    rows = [{"id": f"i{k}", "method": m, "layer": "4", "energy": v[k]}
            for m, v in energy.items() for k in range(4)]  # fmt: skip
    summary = summarise(rows)
    assert summary["baselines"] == ["eigencam"]
    assert best_entries(summary, "energy") == {"gradcam"}  # the floor's higher mean is not best
    line = verdict(summary)[0]
    assert line.startswith("Localizes best (Energy pointing % ↑): gradcam, 41.8")
    assert "gradcam is not clear of the floor (eigencam 44.8 [" in line
    _, body, flags = leaderboard_rows(summary)
    assert [r[0] for r in body] == ["gradcam", "eigencam (floor)", "layercam"]
    assert [f[1] for f in flags] == [True, False, False]
    # a floor the leader clears is said too
    for r in rows:
        if r["method"] == "eigencam":
            r["energy"] -= 40.0
    assert "gradcam is clear of the floor (eigencam)" in " ".join(verdict(summarise(rows)))


def test_the_package_exports_resolve_lazily() -> None:
    import camscope.evaluation as evaluation
    from camscope.evaluation import registry as registry_module

    for name in evaluation.__all__:
        assert getattr(evaluation, name) is not None, name
    assert evaluation.register_metric is registry_module.register_metric
    with pytest.raises(AttributeError, match="no attribute 'COLUMNS'"):
        evaluation.COLUMNS  # noqa: B018  (moved to the registry: metric_columns())


def test_a_class_the_model_does_not_have_is_a_usage_error(batch) -> None:
    model, samples, x, scales = batch
    wrong = dataclasses.replace(samples[1], objects=[
        dataclasses.replace(samples[1].objects[0], class_ids=(3, 1000))
    ])  # fmt: skip
    config = EvalConfig(methods=["gradcam"], metrics=["energy"])
    with pytest.raises(
        UsageError, match=r"class\(es\) \[1000\] are not classes of this model \(1000"
    ):
        evaluate_batch(model, SPEC, [samples[0], wrong], x, scales, config, "4",
                       CountingForward(model))  # fmt: skip

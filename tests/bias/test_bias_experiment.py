"""The bias experiment end to end through ``camscope train`` and the audit, at a tiny size.

The proof that the audit finds a planted shortcut *and* leaves a model without one alone: the same
network is trained on the same images once with a class-linked corner cue and once with the cue
drawn independently of the class, and only the first is flagged, at its cue.
"""

from __future__ import annotations

import json

import pytest

from camscope.bias.experiment import BiasExperiment, held_out_bench, on_cue
from camscope.cli.main import main
from camscope.errors import UsageError

TINY = [
    "--train-images", "320", "--test-images", "60", "--epochs", "8", "--no-progress",
]  # fmt: skip


@pytest.mark.slow
def test_only_the_model_trained_on_the_cue_is_flagged_and_at_its_cue(tmp_path, capsys) -> None:
    out = tmp_path / "bias"
    assert main(["bias-experiment", "--out", str(out), *TINY]) == 0
    result = json.loads((out / "bias.json").read_text())
    biased, balanced = result["models"]["biased"], result["models"]["balanced"]

    # both models look perfect (or nearly) on data like their own training data ...
    assert biased["val_accuracy"] == 1.0 and balanced["val_accuracy"] > 0.8
    # ... but on the test split, where cue and class are independent, the biased one follows the
    # cue: it names the cue's class far more often than chance (1/4) and the object less often
    assert biased["cue_agreement"] > 0.6 and balanced["cue_agreement"] < 0.4
    assert result["gaps"]["test_accuracy"] > 0.25
    assert balanced["test_accuracy"] > 0.85
    # its maps sit off the objects, and its hot spots on the cue squares; none of the other's do
    assert result["gaps"]["object_energy"] > 0.1
    assert len(biased["hotspot_on_cue"]) >= 2 and balanced["hotspot_on_cue"] == []
    for name in biased["hotspot_on_cue"]:
        assert name in biased["flagged"]
        assert any("the maps peak in the" in f for f in biased["per_class"][name]["flags"])
    assert not any(
        "the maps peak in the" in f for c in balanced["per_class"].values() for f in c["flags"]
    )
    # the audits, the run folders and the grid are there, and the summary line was printed
    for name in ("biased", "balanced"):
        assert (out / f"audit-{name}" / "audit.json").is_file()
        assert (out / "runs" / name / "model.safetensors").is_file()
    assert (out / "bias_grid.png").stat().st_size > 10_000
    assert "hot spot on its cue" in capsys.readouterr().out


def test_a_second_run_refuses_the_folder_and_resume_reuses_or_extends_the_runs(
    tmp_path, capsys
) -> None:
    out = tmp_path / "bias"
    tiny = ["--out", str(out), "--train-images", "40", "--test-images", "20", "--width", "4"]
    tiny += ["--epochs", "1", "--no-progress"]
    assert main(["bias-experiment", *tiny]) == 0
    weights = out / "runs" / "biased" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["bias-experiment", *tiny]) == 2
    assert "--resume" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == stamp  # nothing was retrained or overwritten
    assert main(["bias-experiment", *tiny, "--resume"]) == 0
    assert weights.stat().st_mtime_ns == stamp  # finished with these settings: reused
    assert main(["bias-experiment", *tiny, "--resume", "--epochs", "2"]) == 0
    result = json.loads((out / "bias.json").read_text())
    assert [result["models"][m]["epochs"] for m in ("biased", "balanced")] == [2, 2]


def test_on_cue_needs_the_flag_and_the_cue_centre_in_the_box() -> None:
    from types import SimpleNamespace

    bench = held_out_bench(BiasExperiment(test_images=20, size=32, cue_size=0.25))
    peak = "the maps peak in the top-left 12% of the image in 90% of the images"

    def summary(box, flags):
        return SimpleNamespace(hotspot=SimpleNamespace(box=box), flags=flags)

    top_left, centre = (0.0, 0.0, 0.4, 0.4), (0.3, 0.3, 0.7, 0.7)
    run = SimpleNamespace(
        classes={
            "cat": summary(top_left, [peak]),  # the cat's cue is top-left: found
            "cup": summary(top_left, [peak]),  # the cup's cue is top-right: not its own cue
            "rocket": summary((0.0, 0.6, 0.4, 1.0), []),  # on its cue but not flagged
            "motorcycle": summary(centre, [peak]),
        }
    )
    assert on_cue(run, bench) == ["cat"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--bias", "1.5"], "--bias"),
        (["--train-images", "10"], "at least 40 training"),
        (["--size", "16"], "at least 32 px"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_setting(tmp_path, capsys, args, culprit) -> None:
    assert main(["bias-experiment", "--out", str(tmp_path / "o"), *args]) == 2
    assert culprit in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()


def test_the_settings_are_checked_before_anything_is_written() -> None:
    with pytest.raises(UsageError, match="bias must be a probability"):
        BiasExperiment(bias=-0.1).validate()

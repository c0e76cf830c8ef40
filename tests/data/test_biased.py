"""The biased built-in set: the cue goes with the class as often as asked, and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camscope.data.annotations import read_dataset
from camscope.data.biased import CUE_COLOURS, BiasedBenchmark, write_split
from camscope.data.classes import ClassMapper
from camscope.data.synthetic import tight_box
from camscope.errors import UsageError


def test_images_depend_only_on_seed_and_index() -> None:
    small = BiasedBenchmark(6, size=32, seed=3, bias=0.5)
    large = BiasedBenchmark(20, size=32, seed=3, bias=0.5)
    for i in range(6):
        a, b = small.render(i), large.render(i)
        assert np.array_equal(a.image, b.image) and a.cue == b.cue
    other = BiasedBenchmark(6, size=32, seed=4, bias=0.5)
    assert not np.array_equal(small.render(0).image, other.render(0).image)


def test_classes_are_balanced_and_the_cue_is_painted_where_its_class_says() -> None:
    bench = BiasedBenchmark(8, size=48, seed=0, bias=1.0)
    for i in range(8):
        r = bench.render(i)
        assert r.label == bench.names[i % 4] and r.cue == r.label
        k = bench.names.index(r.cue)
        x0, y0, x1, y1 = bench.cue_box(k)
        assert r.cue_box == (x0, y0, x1, y1) and x1 - x0 == 6  # 1/8 of 48
        assert (r.image[y0:y1, x0:x1] == CUE_COLOURS[k]).all()
        assert not r.mask[y0:y1, x0:x1].any()  # the object loses what the cue covers
        sample = bench[i]
        assert sample.objects[0].box == tight_box(r.mask)
        assert sample.extra["cue"] == r.cue and sample.objects[0].label == r.label
    # the four places: top-left, top-right, bottom-left, bottom-right (inset 3% = 1 px)
    assert [bench.cue_box(k)[:2] for k in range(4)] == [(1, 1), (41, 1), (1, 41), (41, 41)]


@pytest.mark.parametrize(
    ("bias", "low", "high"), [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.75, 0.65, 0.85)]
)
def test_the_cue_matches_the_class_as_often_as_the_bias_says(bias, low, high) -> None:
    bench = BiasedBenchmark(400, size=32, seed=0, bias=bias)
    matches = [bench.cue_of(i) == i % 4 for i in range(400)]
    assert low <= np.mean(matches) <= high


def test_an_independent_split_spreads_every_class_over_every_cue() -> None:
    bench = BiasedBenchmark(800, size=32, seed=1, bias=None)
    table = np.zeros((4, 4))
    for i in range(800):
        table[i % 4, bench.cue_of(i)] += 1
    # 50 expected per cell; a binomial sd is about 6.1, so 25..75 is four sd either way
    assert table.min() >= 25 and table.max() <= 75
    # when the cue is wrong it is one of the others, uniformly
    wrong = BiasedBenchmark(800, size=32, seed=1, bias=0.0)
    counts = np.bincount([wrong.cue_of(i) for i in range(0, 800, 4)], minlength=4)
    assert counts[0] == 0 and counts[1:].min() >= 45


def test_write_split_folders_and_boxes(tmp_path) -> None:
    bench = BiasedBenchmark(8, size=32, seed=2, bias=None)
    write_split(bench, tmp_path / "train", "folders")
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(bench.names)
    assert len(list((tmp_path / "train").rglob("*.png"))) == 8
    test = write_split(bench, tmp_path / "test", "boxes")
    samples = read_dataset(test, ClassMapper(bench.names)).items
    assert len(samples) == 8
    for i, s in enumerate(samples):
        r = bench.render(i)
        assert s.objects[0].label == r.label and s.objects[0].box == tight_box(r.mask)
        assert np.array_equal(np.asarray(Image.open(s.path)), r.image)
        mask = np.asarray(Image.open(test / "masks" / s.path.name)) > 0
        assert np.array_equal(mask, r.mask) and s.mask == test / "masks" / s.path.name
        assert np.array_equal(s.read_mask((r.image.shape[1], r.image.shape[0])), r.mask)
    cues = (test / "cues.tsv").read_text().splitlines()
    assert cues[0] == "file\tclass\tcue" and len(cues) == 9


@pytest.mark.parametrize(
    "kwargs",
    [{"bias": 1.5}, {"objects": ("cat",)}, {"cue_size": 0.5}, {"bias": -0.1}],
)
def test_bad_settings_are_usage_errors(kwargs) -> None:
    with pytest.raises(UsageError):
        BiasedBenchmark(4, size=32, **kwargs)


def test_bad_layout_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(UsageError, match="layout"):
        write_split(BiasedBenchmark(2, size=32), tmp_path, "zip")

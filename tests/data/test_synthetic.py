"""The built-in benchmark: deterministic, with exact boxes."""

from __future__ import annotations

import numpy as np
import pytest

from camscope.data.synthetic import OBJECTS, SyntheticBenchmark
from camscope.errors import UsageError


def test_deterministic_and_prefix_stable():
    a = SyntheticBenchmark(6, size=64, seed=3)
    b = SyntheticBenchmark(20, size=64, seed=3)
    for i in range(6):
        assert np.array_equal(np.asarray(a[i].image), np.asarray(b[i].image))
        assert a[i].objects == b[i].objects
    c = SyntheticBenchmark(6, size=64, seed=4)
    assert any(not np.array_equal(np.asarray(a[i].image), np.asarray(c[i].image)) for i in range(6))


def test_boxes_are_exact_and_objects_do_not_overlap():
    bench = SyntheticBenchmark(12, size=96, seed=0, two_object_fraction=0.5)
    kinds = set()
    for i in range(len(bench)):
        r = bench.render(i)
        sample = bench[i]
        assert len(r.masks) == len(sample.objects) in (1, 2)
        union = np.zeros_like(r.masks[0])
        for mask, obj in zip(r.masks, sample.objects):
            rows = np.flatnonzero(mask.any(1))
            cols = np.flatnonzero(mask.any(0))
            assert obj.box == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert not (union & mask).any()
            union |= mask
            spec = next(o for o in OBJECTS if o.name == obj.label)
            assert obj.class_ids == spec.class_ids
        # outside the objects the picture is the untouched background
        assert np.array_equal(r.image[~union], r.background[~union])
        kinds.add(len(r.masks))
        if len(sample.objects) == 2:
            b0, b1 = (o.box for o in sample.objects)
            assert b0[2] <= b1[0] or b1[2] <= b0[0] or b0[3] <= b1[1] or b1[3] <= b0[1]
    assert kinds == {1, 2}


def test_bad_arguments():
    with pytest.raises(UsageError):
        SyntheticBenchmark(0)
    with pytest.raises(UsageError, match="unknown benchmark object"):
        SyntheticBenchmark(3, objects=("dog",))


def test_ids_without_rendering(monkeypatch):
    bench = SyntheticBenchmark(4000, size=64, seed=2)
    monkeypatch.setattr(SyntheticBenchmark, "render", lambda self, i: pytest.fail("rendered"))
    ids = bench.ids()
    assert len(ids) == 4000 and ids[7] == "builtin-2-000007"


def test_objects_count_as_the_classes_of_a_model_trained_on_them():
    from camscope.data.read import read_data
    from camscope.errors import DatasetError

    classes = ["cat", "cup", "motorcycle", "rocket"]  # camscope train's classes for builtin:N
    mapped = read_data("builtin:6", classes, size=32)
    plain = read_data("builtin:6", [], size=32)  # an ImageNet model
    assert mapped.class_ids == {"cat": (0,), "cup": (1,), "rocket": (3,), "motorcycle": (2,)}
    kinds = {o.name: o.class_ids for o in OBJECTS}
    for ours, imagenet in zip(mapped.items, plain.items):
        assert [o.label for o in ours.objects] == [o.label for o in imagenet.objects]
        assert [o.box for o in ours.objects] == [o.box for o in imagenet.objects]
        assert [o.class_ids for o in ours.objects] == [
            (classes.index(o.label),) for o in ours.objects
        ]
        assert [o.class_ids for o in imagenet.objects] == [kinds[o.label] for o in imagenet.objects]
    with pytest.raises(DatasetError, match="'cat'"):  # not the object kinds: named, not guessed
        read_data("builtin:6", ["tabby", "cup", "motorcycle", "rocket"], size=32)

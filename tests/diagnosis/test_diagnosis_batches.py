"""The batch walker of failures and adversarial: what is skipped, why, and what comes through."""

from __future__ import annotations

import numpy as np
from PIL import Image

from camscope.data.labelled import LabelledItem
from camscope.diagnosis.batches import DiagnosisSettings, SkipLog, prepared_batches
from camscope.models import ModelSpec


def test_unusable_items_are_skipped_with_their_reason_and_the_others_go_on(tmp_path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(good)
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    items = [
        LabelledItem("a", str(good), "a", "cat", (1,), object_boxes=((0, 0, 5, 4),)),
        LabelledItem("b", str(good), "b", "tulip", error="class folder 'tulip': no class"),
        LabelledItem("c", str(good), "c", "yak"),  # a label of no model class
        LabelledItem("d", str(tmp_path / "broken.png"), "d", "cat", (1,)),
        LabelledItem("e", str(good), "e", "cat", (1,)),
    ]
    told: list[tuple[str, str]] = []
    skip = SkipLog(lambda path, reason: told.append((path, reason)))
    spec = ModelSpec("m", input_size=(16, 20))
    settings = DiagnosisSettings(batch_size=2, progress=False)
    batches = list(prepared_batches(items, spec, settings, skip, need_class=True))
    assert [[item.id for item, *_ in b] for b in batches] == [["a"], [], ["e"]]
    (_, image, x, boxes), *_ = batches[0]
    assert image.size == (10, 8) and x.shape == (1, 3, 16, 20)
    assert boxes.tolist() == [[0.0, 0.0, 10.0, 8.0]]  # scaled to the input size
    assert [path for path, _ in told] == [str(good), str(good), str(tmp_path / "broken.png")]
    assert "tulip" in told[0][1] and "'yak' names no class" in told[1][1]
    assert skip.errors == [{"path": p, "error": r} for p, r in told]
    # adversarial attacks images without a class: only the error and the broken file are skipped
    kept = list(prepared_batches(items, spec, settings, SkipLog(None)))
    assert [[item.id for item, *_ in b] for b in kept] == [["a"], ["c"], ["e"]]

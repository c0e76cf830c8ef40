"""The walk of failures and adversarial: what is skipped, why, and what comes through."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from camscope.data.dataset import GroundTruth, Sample
from camscope.diagnosis.batches import DiagnosisRun, DiagnosisSettings
from camscope.models import ModelSpec


def test_unusable_items_are_skipped_with_their_reason_and_the_others_go_on(tmp_path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(good)
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    box = GroundTruth("cat", (1,), (0, 0, 5, 4))
    items = [
        Sample("a", str(good), "cat", (1,), (box,)),
        Sample("b", str(good), "tulip", error="class folder 'tulip': no class"),
        Sample("c", str(good), "yak"),  # a label of no model class
        Sample("d", str(tmp_path / "broken.png"), "cat", (1,)),
        Sample("e", str(good), "cat", (1,)),
    ]
    told: list[tuple[str, str]] = []
    spec = ModelSpec("m", input_size=(16, 20))
    settings = DiagnosisSettings(
        batch_size=2, progress=False, on_skip=lambda path, reason: told.append((path, reason))
    )
    run = DiagnosisRun(torch.nn.Linear(1, 1), tmp_path / "out", settings)
    batches = [b.ok for b in run.batches(items, spec, need_class=True)]
    assert [[item.id for item, _ in b] for b in batches] == [["a"], [], ["e"]]
    (item, prepared), *_ = batches[0]
    assert prepared.image.size == (10, 8) and prepared.x.shape == (1, 3, 16, 20)
    boxes = prepared.scaled(item.object_boxes)
    assert boxes.tolist() == [[0.0, 0.0, 10.0, 8.0]]  # scaled to the input size
    assert [path for path, _ in told] == [str(good), str(good), str(tmp_path / "broken.png")]
    assert "tulip" in told[0][1] and "'yak' names no class" in told[1][1]
    assert str(tmp_path) not in told[2][1]  # the reason does not repeat the path
    assert run.errors == [{"path": p, "error": r} for p, r in told]
    run.skip(items[4], "RuntimeError: the model failed")  # a failure after decoding
    assert run.errors[-1] == {"path": str(good), "error": "RuntimeError: the model failed"}
    # adversarial attacks images without a class: only the error and the broken file are skipped
    kept = [b.ok for b in run.batches(items, spec)]
    assert [[item.id for item, _ in b] for b in kept] == [["a"], ["c"], ["e"]]

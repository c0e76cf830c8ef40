"""The one batch walker and the one progress bar: skips with reasons that name the file once,
progress after each batch, resume positions, cancel, worker processes, plain lines in logs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camscope.data import progress as bars
from camscope.data.dataset import Sample
from camscope.data.progress import Progress
from camscope.data.walk import Batch, Outcome, Walk, name_images, naming_warnings
from camscope.errors import UsageError
from camscope.models import ModelSpec

SPEC = ModelSpec("m", input_size=(8, 8))


def samples(tmp_path: Path) -> list[Sample]:
    out = []
    for i in range(5):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((6, 9, 3), i * 40, dtype=np.uint8)).save(path)
        out.append(Sample(f"img{i}.png", str(path), "cat", (0,)))
    (tmp_path / "img2.png").write_bytes(b"not a picture")  # the third one is broken
    return out


def test_batches_skips_and_progress(tmp_path: Path) -> None:
    items = samples(tmp_path)
    told: list[tuple[str, str]] = []
    ticks: list[tuple[int, int]] = []
    walk: Walk = Walk(
        items,
        spec=SPEC,
        batch_size=2,
        progress=lambda done, total: ticks.append((done, total)),
        on_skip=lambda source, reason: told.append((source, reason)),
    )
    seen = []
    for batch in walk:
        seen.append([s.id for s, _ in batch.ok])
        assert len(ticks) == len(seen) - 1  # the bar moves once the caller is done with a batch
        for _, prepared in batch.ok:
            assert prepared.x.shape == (1, 3, 8, 8) and prepared.scale == (8 / 9, 8 / 6)
    assert seen == [["img0.png", "img1.png"], ["img3.png"], ["img4.png"]]
    assert ticks == [(2, 5), (4, 5), (5, 5)]
    ((source, reason),) = told
    assert source == items[2].source and "not an image" in reason and source not in reason
    assert [(s.id, s.source) for s in walk.skipped] == [("img2.png", items[2].source)]


def test_resume_positions_cancel_and_a_usage_error(tmp_path: Path) -> None:
    items = samples(tmp_path)
    done = Walk(items, spec=SPEC, batch_size=2, positions=[4, 0])
    assert [[s.id for s, _ in b.ok] for b in done] == [["img4.png", "img0.png"]]
    asked: list[int] = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 1

    walk = Walk(items, spec=SPEC, batch_size=1, cancel=cancel)
    assert len(list(walk)) == 1 and walk.cancelled
    with pytest.raises(UsageError, match="batch_size must be at least 1"):
        Walk(items, spec=SPEC, batch_size=0)

    def refuse(sample: Sample) -> None:
        raise UsageError("wrong for every image")

    with pytest.raises(UsageError, match="every image"):
        list(Walk(items, refuse))


def test_labels_of_no_class_and_errors_found_when_read_are_skips(tmp_path: Path) -> None:
    good = samples(tmp_path)[0]
    items = [
        Sample("x", good.source, "yak"),
        Sample("y", good.source, "tulip", (1,), error="class folder 'tulip': no class"),
    ]
    walk = Walk(items, spec=SPEC, need_class=True)
    assert [b.ok for b in walk] == [[]]
    assert [s.reason for s in walk.skipped] == [
        "label 'yak' names no class of the model",
        "class folder 'tulip': no class",
    ]


def test_worker_processes_give_the_same_batches_and_a_collate_its_form(tmp_path: Path) -> None:
    items = samples(tmp_path)

    def stacked(outcomes: list[Outcome]) -> Batch:
        return Batch(outcomes)

    here = [[s.id for s, _ in b.ok] for b in Walk(items, spec=SPEC, batch_size=2)]
    walk = Walk(items, spec=SPEC, batch_size=2, workers=1, collate=stacked)
    there = list(walk)
    assert [[s.id for s, _ in b.ok] for b in there] == here
    assert torch.equal(there[0].ok[0][1].x, items[0].prepare(SPEC).x)
    assert [s.id for s in walk.skipped] == ["img2.png"]


def test_engine_messages_name_files_not_batch_positions() -> None:
    batch = [Sample("a", "lab/a.jpg"), Sample("b", "lab/b.jpg"), Sample("c", "lab/c.jpg")]
    text = "layer 'x': zero gradient for image(s) [0, 2], so every map is zero"
    assert name_images(text, batch) == (
        "layer 'x': zero gradient for image(s) lab/a.jpg, lab/c.jpg, so every map is zero"
    )


def _negative_class_net() -> torch.nn.Module:
    """conv (a positive identity) -> ReLU -> mean -> logits [+m, -m]: class 1's Grad-CAM weight is
    negative, so its map is zero everywhere and the engine warns about every image."""
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    head = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return torch.nn.Sequential(conv, torch.nn.ReLU(), pool, head).eval()


def test_explain_warnings_in_a_batch_are_logged_once_naming_the_files(caplog) -> None:
    import camscope

    model, x = _negative_class_net(), torch.rand(2, 1, 4, 4) + 0.1
    with caplog.at_level("WARNING", logger="camscope"):
        res = camscope.explain(model, x, "gradcam", "1", targets=1)
    plain = [r.getMessage() for r in caplog.records if "zero everywhere" in r.getMessage()]
    assert res.warnings and any("image(s) [0, 1]" in m for m in plain)  # the engine alone
    caplog.clear()
    names = ["lab/a.jpg", "lab/b.jpg"]
    with caplog.at_level("WARNING", logger="camscope"), naming_warnings(names):
        res = camscope.explain(model, x, "gradcam", "1", targets=1, aug_smooth=True)
    said = [r.getMessage() for r in caplog.records if "zero everywhere" in r.getMessage()]
    assert len(said) == 1 and "image(s) lab/a.jpg, lab/b.jpg" in said[0]
    assert "[0, 1]" not in said[0]
    assert any("image(s) [0, 1]" in w for w in res.warnings)  # the result keeps the positions


def test_the_bar_writes_plain_lines_without_a_terminal_and_a_bar_on_one(monkeypatch, capsys):
    clock = iter(float(t) for t in range(0, 1000, 6))  # made at 0, started at 6, first at 12
    monkeypatch.setattr(bars.time, "monotonic", lambda: next(clock))
    with Progress(label="camscope audit") as bar:  # the total comes when the walk starts
        bar.start(3)
        bar.skipped("lab/\x1b[31mx.jpg", "empty")
        bar.advance(1)
        bar.advance(2)  # the last one: no line
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "camscope audit: skipped lab/\\x1b[31mx.jpg: empty",
        "camscope audit: 1/3 images, 6.00 s/image, about 12 s left",
    ]
    Progress(3, "camscope audit", enabled=False).advance(1)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = Progress(4, "camscope embed")
    assert bar.bar is not None and bar.bar.total == 4
    bar.advance(2)
    bar.note(loss="0.412")  # figures beside the bar (camscope train's loss and accuracy)
    assert bar.bar.n == 2 and bar.bar.postfix == "loss=0.412"
    bar.close()
    assert bar.bar is None

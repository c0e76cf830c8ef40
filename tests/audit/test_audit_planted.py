"""A tiny CNN trained in the test on a planted cue is caught by the audit, at the cue's place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camscope.audit.run import AuditConfig, run_audit
from camscope.data.biased import BiasedBenchmark, write_split
from camscope.data.read import read_data
from camscope.models import ModelSpec

SIDE, CUE = 32, 0.25
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _tensor(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _train_on_the_shortcut(bench: BiasedBenchmark) -> nn.Module:
    """Adam on a three-conv GAP net; with bias 1.0 the cue's colour and place give the class."""
    rendered = [bench.render(i) for i in range(len(bench))]
    x = torch.stack([_tensor(r.image) for r in rendered])
    y = torch.tensor([bench.names.index(r.label) for r in rendered])
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, len(bench.names)),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.slow
def test_a_model_trained_on_a_planted_cue_is_flagged_at_the_cue(tmp_path) -> None:
    train = BiasedBenchmark(128, size=SIDE, seed=0, bias=1.0, cue_size=CUE)
    test = BiasedBenchmark(48, size=SIDE, seed=1, bias=None, cue_size=CUE)
    net = _train_on_the_shortcut(train)
    write_split(test, tmp_path / "test", "boxes")
    spec = ModelSpec("tiny", input_size=(SIDE, SIDE), mean=MEAN, std=STD, class_names=train.names)
    data = read_data(str(tmp_path / "test"), spec.class_names)
    assert data.kind == "annotations" and len(data.items) == 48
    run = run_audit(net, spec, data, AuditConfig(layer="4", examples=2))

    # The model follows the cue, not the object: on the independent split its predictions are
    # the cue's class, and so its accuracy is near chance.
    cue_match = np.mean([test.names[test.cue_of(i)] == spec.label(r.predicted)
                         for i, r in enumerate(run.records)])  # fmt: skip
    assert cue_match > 0.9
    assert np.mean([r.correct for r in run.records]) < 0.6
    for k, name in enumerate(train.names):
        summary = run.classes[name]
        assert summary.hotspot is not None, name
        # the hot spot lies on the class's cue square, and nearly every peak falls in it
        x0, y0, x1, y1 = (v * SIDE for v in summary.hotspot.box)
        cx0, cy0, cx1, cy1 = test.cue_box(k)
        assert x0 >= cx0 - 3 and y0 >= cy0 - 3 and x1 <= cx1 + 3 and y1 <= cy1 + 3, name
        assert any(f.startswith("the maps peak in the") for f in summary.flags), name
    assert sorted(run.flagged) == sorted(train.names)
    # with boxes, the worst images of each flagged class come back for the report
    assert set(run.examples) == set(train.names)
    assert all(len(items) == 2 for items in run.examples.values())
    # masks were found beside boxes.csv and measured (undefined only for maps without energy)
    assert all(np.isnan(r.mask_energy) == (r.predicted_stats.energy == 0) for r in run.records)
    assert sum(not np.isnan(r.mask_energy) for r in run.records) > 24
    # the maps of the predicted class sit on the cue, off the objects
    energies = [c.object_energy for c in run.classes.values()]
    assert all(e is not None and e < 0.5 for e in energies)

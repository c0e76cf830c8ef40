"""``evaluate_batch`` against the same metrics computed from separate, plain explain calls."""

from __future__ import annotations

import pytest
import torch
from nets import imagenet_sized

from camscope import explain
from camscope.data.synthetic import SyntheticBenchmark
from camscope.evaluation import CountingForward, EvalConfig, evaluate_batch, to_input
from camscope.metrics import localization as lm
from camscope.models import ModelSpec

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
SPEC = ModelSpec("tiny", input_size=(32, 32), mean=MEAN, std=STD)


def boxes_of(sample, scale, j):
    sx, sy = scale
    x0, y0, x1, y1 = sample.objects[j].box
    return torch.tensor([[[x0 * sx, y0 * sy, x1 * sx, y1 * sy]]]), torch.tensor([[True]])


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_one_call_per_batch_equals_separate_explain_calls(method: str) -> None:
    model = imagenet_sized(batch_norm=True)
    bench = SyntheticBenchmark(12, size=32, seed=0)
    two = [s for s in bench if len(s.objects) == 2][:2]
    one = next(s for s in bench if len(s.objects) == 1)
    samples = [*two, one]
    inputs = [to_input(s, SPEC) for s in samples]
    x = torch.stack([t for t, _ in inputs])
    scales = [sc for _, sc in inputs]
    config = EvalConfig(methods=[method], metrics=["loc", "pointing", "energy", "discrimination"])
    rows, maps = evaluate_batch(
        model, SPEC, samples, x, scales, config, "4", CountingForward(model)
    )
    with torch.no_grad():
        logits = model(x)
    for i, (sample, row) in enumerate(zip(samples, rows)):
        ids = torch.tensor(sample.objects[0].class_ids)
        first = int(ids[logits[i, ids].argmax()])
        assert row["target"] == first
        own = explain(model, x[i : i + 1], method, "4", targets=first).maps[method]
        assert torch.allclose(maps[method][i], own[0], atol=1e-5)
        box, valid = boxes_of(sample, scales[i], 0)
        iou = lm.box_iou(lm.wsol_boxes(own, config.threshold)[:, None], box)[0, 0]
        assert row["iou"] == pytest.approx(float(iou), abs=1e-6)
        assert row["energy"] == pytest.approx(
            100 * float(lm.energy_pointing(own, box, valid)), abs=1e-4
        )
        if len(sample.objects) == 2:
            ids_b = torch.tensor(sample.objects[1].class_ids)
            second = int(ids_b[logits[i, ids_b].argmax()])
            other = explain(model, x[i : i + 1], method, "4", targets=second).maps[method]
            box_b, valid_b = boxes_of(sample, scales[i], 1)
            _, share_a = lm.discrimination(own, box, valid, box_b, valid_b)
            _, share_b = lm.discrimination(other, box_b, valid_b, box, valid)
            expected = 100 * (float(share_a[0]) + float(share_b[0])) / 2
            assert row["disc_energy"] == pytest.approx(expected, abs=1e-4)
        else:
            assert "disc_energy" not in row

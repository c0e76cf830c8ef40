"""``run_evaluation`` end to end: every stored value against a plain loop written here.

A tiny seeded CNN (6 classes, 16 x 16 inputs, a non-ImageNet normalisation) on four 32 x 32
images whose boxes are placed so that the values differ between images (a top-1 hit, a top-1
miss that only the fifth guess finds, a two-object image, a class outside the top 5). The loop
below explains each image by itself with plain :func:`camscope.explain` calls on the eager model and computes every metric
the straightforward way (NumPy ranks, SciPy components and Spearman); the run batches, uses the
fast model copy and the registered metric families. Only ROAD's imputation and the robustness
noise come from the library (their math is tested in ``tests/metrics``).
"""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats
from torch import nn

from camscope import explain
from camscope.data.dataset import GroundTruth, Sample
from camscope.evaluation import EvalConfig, run_evaluation, to_input
from camscope.metrics import faithfulness as fm
from camscope.metrics import robustness as rm
from camscope.models import ModelSpec

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
METHODS = ["gradcam", "eigencam"]
LAYER = "relu"
TOL, STEPS, FRACTIONS, PATCH, STRIDE, COPIES = 2.0, 4, (0.25, 0.5), 8, 4, 2


class Net(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, classes)
        with torch.no_grad():  # mostly positive head weights: every class has evidence somewhere
            self.conv.weight.copy_(torch.randn(8, 3, 3, 3, generator=gen) * 0.3)
            self.conv.bias.copy_(torch.randn(8, generator=gen) * 0.1)
            self.fc.weight.copy_(torch.randn(classes, 8, generator=gen) * 0.5 + 0.4)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def _spec(classes: int) -> ModelSpec:
    names = [f"k{i}" for i in range(classes)]
    return ModelSpec("wiring", input_size=(16, 16), mean=MEAN, std=STD, class_names=names)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]


def _map(model, x, method, cls):
    return explain(model, x[None], method, LAYER, targets=int(cls)).maps[method][0]


def _wsol(m: torch.Tensor) -> list[float]:
    """Box around the largest 8-connected component of ``m >= 0.15 max`` (SciPy)."""
    a = m.numpy()
    labels, _ = ndimage.label(a >= 0.15 * a.max(), structure=np.ones((3, 3)))
    big = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    rows, cols = np.nonzero(labels == big)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _distance(m: torch.Tensor, box) -> float:
    """Pixels from the map's first maximum to the nearest pixel whose centre is in ``box``."""
    r, c = divmod(int(m.flatten().argmax()), m.shape[1])
    cols = range(math.ceil(box[0] - 0.5), math.floor(box[2] - 0.5) + 1)
    rows = range(math.ceil(box[1] - 0.5), math.floor(box[3] - 0.5) + 1)
    return min(math.hypot(r - i, c - j) for i in rows for j in cols)


def _inside(box, h=16, w=16) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (xs >= box[0]) & (xs <= box[2]) & (ys >= box[1]) & (ys <= box[3])


def _order(m: torch.Tensor) -> np.ndarray:
    return np.argsort(-m.flatten().numpy(), kind="stable")  # most relevant first, raster ties


def _data(model):
    """Samples whose boxes depend on the model's own classes and maps (see the module doc)."""
    spec, images = _spec(6), _images()
    xs = torch.stack(
        [to_input(Sample(f"i{k}", f"i{k}", image=im), spec)[0] for k, im in enumerate(images)]
    )
    top = model(xs).topk(6, dim=1).indices.tolist()
    first_box = [2 * v for v in _wsol(_map(model, xs[0], "gradcam", top[0][0]))]
    third_box = [2 * v for v in _wsol(_map(model, xs[2], "gradcam", top[2][4]))]
    objects = [
        [GroundTruth("a", (top[0][0],), tuple(first_box))],
        [GroundTruth("a", (top[1][1], top[1][3]), (16, 0, 32, 16)),
         GroundTruth("b", (top[1][0],), (0, 16, 16, 32))],
        [GroundTruth("a", (top[2][4],), tuple(third_box))],
        [GroundTruth("a", (top[3][5],), (0, 16, 32, 32))],
    ]  # fmt: skip
    return [
        Sample(f"i{k}", f"i{k}", objects=tuple(o), image=im)
        for k, (o, im) in enumerate(zip(objects, images))
    ]


def _expected(model, spec, samples) -> dict[tuple[str, str], dict[str, float]]:
    xs = torch.stack([to_input(s, spec)[0] for s in samples])
    black = ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).view(3, 1, 1)

    def prob(inputs, cls):
        return torch.softmax(model(inputs), 1)[:, cls]

    out = {}
    with torch.no_grad():
        logits = model(xs)
    for m in METHODS:
        maps = []
        for i, s in enumerate(samples):
            x, boxes = xs[i], [[v / 2 for v in o.box] for o in s.objects]
            ids = list(s.objects[0].class_ids)
            t = ids[int(logits[i, ids].argmax())]
            top5 = logits[i].topk(5).indices.tolist()
            a = _map(model, x, m, t)
            maps.append(a)
            row = out[s.id, m] = {"target": t}
            with torch.no_grad():
                y = float(prob(x[None], t))
                o = float(prob((black + a * (x - black))[None], t))
                row.update(avg_drop=100 * max(0.0, y - o) / y, increase=100.0 * (o > y),
                           signed_drop=100 * (y - o) / y)  # fmt: skip
                order = _order(a)
                for mode, base in (("deletion", torch.zeros_like(x)), ("insertion", black + 0 * x)):
                    curve = []
                    for k in range(STEPS + 1):
                        flat = torch.zeros(256, dtype=torch.bool)
                        flat[order[: round(k * 256 / STEPS)]] = True
                        changed = flat.view(16, 16)
                        inp = (
                            torch.where(changed, base, x)
                            if mode == "deletion"
                            else torch.where(changed, x, base)
                        )
                        curve.append(float(prob(inp[None], t)))
                    row[mode] = sum(curve[k] + curve[k + 1] for k in range(STEPS)) / (2 * STEPS)
                drops, pooled = [], []
                for r0 in (0, 4, 8):
                    for c0 in (0, 4, 8):
                        hidden = x.clone()
                        hidden[:, r0 : r0 + PATCH, c0 : c0 + PATCH] = 0
                        drops.append(float(model(x[None])[0, t] - model(hidden[None])[0, t]))
                        pooled.append(float(a[r0 : r0 + PATCH, c0 : c0 + PATCH].mean()))
                row["occlusion_rho"] = float(stats.spearmanr(pooled, drops).statistic)
            all5 = explain(model, x[None], m, LAYER, targets=torch.tensor([top5]))
            guesses = [_wsol(all5.maps[m][0, k]) for k in range(5)]
            ok = [any(c in o.class_ids and _iou(g, b) >= 0.5 for o, b in zip(s.objects, boxes))
                  for c, g in zip(top5, guesses)]  # fmt: skip
            row["loc_error_top1"], row["loc_error_top5"] = (
                100.0 * (not ok[0]),
                100.0 * (not any(ok)),
            )
            row["iou"] = _iou(_wsol(a), boxes[0])
            row["pointing"] = 100.0 * (_distance(a, boxes[0]) <= TOL)
            row["energy"] = 100 * float(a[_inside(boxes[0])].sum() / a.sum())
            peaks = [float(all5.raw[m][0, k].clamp(min=0).max()) for k in range(5)]
            correct = []
            for k, c in enumerate(top5):
                mine = [b for o, b in zip(s.objects, boxes) if c in o.class_ids]
                rejected = peaks[k] < 0.5 * max(peaks)
                hit = any(_distance(all5.maps[m][0, k], b) <= TOL for b in mine)
                correct.append(hit and not rejected if mine else rejected)
            row["pointing_top5"] = 100 * sum(correct) / 5
            if len(s.objects) == 2:
                ids_b = list(s.objects[1].class_ids)
                second = _map(model, x, m, ids_b[int(logits[i, ids_b].argmax())])
                hits, shares = [], []
                for mp, (own, other) in ((a, boxes), (second, boxes[::-1])):
                    hits.append(_distance(mp, own) == 0 and _distance(mp, other) > 0)
                    e_own, e_other = float(mp[_inside(own)].sum()), float(mp[_inside(other)].sum())
                    shares.append(e_own / (e_own + e_other))
                row["disc_pointing"], row["disc_energy"] = 50.0 * sum(hits), 50.0 * sum(shares)
            _robustness(model, x, a, t, int(logits[i].argmax()), s.id, m, row)
        _road(model, xs, maps, [out[s.id, m]["target"] for s in samples], m, samples, out)
    return out


def _road(model, xs, maps, targets, method, samples, out) -> None:
    for name, sign in (("road_morf", 1.0), ("road_lerf", -1.0)):
        values = torch.zeros(len(samples))
        for j, f in enumerate(FRACTIONS):
            removed = torch.zeros(len(samples), 256, dtype=torch.bool)
            for i, a in enumerate(maps):
                removed[i, _order(sign * a)[: round(f * 256)]] = True
            imputed = fm.noisy_linear_impute(xs, removed.view(-1, 16, 16), noise=0.01, seed=j)
            with torch.no_grad():
                p = torch.softmax(model(imputed), 1)
            values += p[torch.arange(len(samples)), torch.tensor(targets)] / len(FRACTIONS)
        for i, s in enumerate(samples):
            out[s.id, method][name] = float(values[i])


def _robustness(model, x, a, t, top1, sid, method, row) -> None:
    deltas = rm.uniform_noise(x.shape, COPIES, 0.05, [zlib.crc32(sid.encode())])[0]
    deltas = deltas / torch.tensor(STD).view(1, 3, 1, 1)
    sens, lips, inter, shift = [], [], [], []
    rows = torch.arange(16.0) + 0.5
    for d in deltas:
        b = _map(model, x + d, method, t)
        sens.append(float((a - b).norm() / a.norm()))
        lips.append(float((a - b).norm() / (d.norm() + 1e-10)))
        if int(model((x + d)[None]).argmax()) == top1:
            inter.append(len(set(_order(a)[:5]) & set(_order(b)[:5])) / 5)
            com = [
                torch.stack([(m.sum(1) * rows).sum(), (m.sum(0) * rows).sum()]) / m.sum()
                for m in (a, b)
            ]
            shift.append(float((com[0] - com[1]).norm()))
    row.update(max_sensitivity=max(sens), avg_sensitivity=sum(sens) / COPIES, lipschitz=max(lips),
               topk_intersection=100 * np.mean(inter) if inter else None,
               com_shift=np.mean(shift) if shift else None)  # fmt: skip


def _config(**more) -> EvalConfig:
    return EvalConfig(
        methods=METHODS, layers=[LAYER], batch_size=4, forward_batch=5, steps=STEPS,
        insertion_substrate="black", road_fractions=list(FRACTIONS), occlusion_patch=PATCH,
        occlusion_stride=STRIDE, tolerance=TOL, robustness_samples=COPIES, robustness_radius=0.05,
        **more,
    )  # fmt: skip


def test_every_stored_value_is_the_plain_loops(tmp_path) -> None:
    model, spec = Net(6).eval(), _spec(6)
    samples = _data(model)
    metrics = ["loc", "pointing", "energy", "discrimination", "drop", "deletion", "insertion",
               "road", "occlusion", "robustness"]  # fmt: skip
    result = run_evaluation(model, spec, samples, _config(metrics=metrics), tmp_path / "ev",
                            progress=False, examples=0)  # fmt: skip
    stored = [
        json.loads(line) for line in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    ]
    assert len(stored) == 8 and result.failed == []
    expected = _expected(model, spec, samples)
    for row in stored:
        want = expected[row["id"], row["method"]]
        for key, value in want.items():
            if value is None:
                assert row[key] is None, (row["id"], row["method"], key)
            else:
                assert row[key] == pytest.approx(value, abs=2e-4), (row["id"], row["method"], key)
        assert ("disc_energy" in row) == (row["id"] == "i1")
    # the data exercise both outcomes where a column is a hit or a miss
    gradcam = {k[0]: v for k, v in expected.items() if k[1] == "gradcam"}
    assert gradcam["i0"]["loc_error_top1"] == 0.0
    assert gradcam["i2"]["loc_error_top1"] == 100.0 and gradcam["i2"]["loc_error_top5"] == 0.0
    assert {v["pointing_top5"] for v in gradcam.values()} != {100.0}
    # Win %: per image the lowest signed drop (ties within 0.01 points shared), averaged
    wins = {m: 0.0 for m in METHODS}
    for s in samples:
        drops = {m: expected[s.id, m]["signed_drop"] for m in METHODS}
        best = [m for m in METHODS if drops[m] <= min(drops.values()) + 0.01]
        for m in best:
            wins[m] += 100.0 / len(best) / len(samples)
    board = result.summary["leaderboard"]
    assert {m: board[m]["win"]["mean"] for m in METHODS} == pytest.approx(wins)
    assert 0 < wins["gradcam"] < 100


class Output(nn.Module):
    """``Net`` whose output is a tensor, a tuple or a dict, and (``sign=-1``) whose single logit
    is negated: one model says "yes" on every image, the other "no"."""

    def __init__(self, classes: int, kind: str, sign: float = 1.0) -> None:
        super().__init__()
        self.net, self.kind = Net(classes), kind
        with torch.no_grad():
            self.net.fc.weight.mul_(sign)

    def forward(self, x: torch.Tensor):
        z = self.net(x)
        return {"tensor": z, "tuple": (z, x.mean()), "dict": {"logits": z}}[self.kind]


@pytest.mark.parametrize("kind", ["tensor", "tuple", "dict"])
@pytest.mark.parametrize(
    "classes,sign", [(6, 1.0), (1, 1.0), (1, -1.0)], ids=["softmax", "yes", "no"]
)
def test_evaluate_reports_the_library_prediction(tmp_path, kind, classes, sign) -> None:
    """top-1 and the explained class's probability are :func:`camscope.core.prediction.classify`'s
    (within 1e-6) for softmax, single-logit ("yes" and "no") and tuple / dict outputs; for a
    single logit they are ``sigmoid(z)`` for class 1 and ``1 - sigmoid(z)`` for class 0, and the
    drop family uses those probabilities (softmax over one logit would make every p 1)."""
    from camscope.core.prediction import classify

    model, spec = Output(classes, kind, sign).eval(), _spec(max(2, classes))
    images = _images()[:3]
    labels = [(0,), (1,), (0, 1)]
    samples = [Sample(f"b{k}", f"b{k}", objects=(GroundTruth("x", c, (0, 0, 32, 32)),), image=im)
               for k, (c, im) in enumerate(zip(labels, images))]  # fmt: skip
    config = _config(metrics=["drop"])
    config.layers = ["net.relu"]
    run_evaluation(model, spec, samples, config, tmp_path / "ev", progress=False, examples=0)
    rows = [
        json.loads(line) for line in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    ]
    xs = torch.stack([to_input(s, spec)[0] for s in samples])
    library = classify(model, xs)
    black = ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).view(3, 1, 1)
    for row in rows:
        k = int(row["id"][1:])
        assert row["top1"] == int(library.classes[k])
        assert row["target"] == library.best_of(k, labels[k])
        assert row["p_target"] == pytest.approx(library.probability(k, row["target"]), abs=1e-6)
        if classes > 1:
            continue
        z = float(model.net(xs[k : k + 1])[0, 0].detach())
        p1 = 1 / (1 + math.exp(-z))
        assert row["top1"] == int(z >= 0) == int(sign > 0)
        assert row["p_target"] == pytest.approx(p1 if row["target"] else 1 - p1, abs=1e-6)
        a = explain(model, xs[k : k + 1], row["method"], "net.relu", targets=row["target"]).maps
        with torch.no_grad():
            zo = float(model.net((black + a[row["method"]][0] * (xs[k] - black))[None])[0, 0])
        o = 1 / (1 + math.exp(-zo)) if row["target"] else 1 / (1 + math.exp(zo))
        y = row["p_target"]
        assert row["avg_drop"] == pytest.approx(100 * max(0.0, y - o) / y, abs=1e-4)


def test_warnings_of_every_explain_call_name_the_images(tmp_path, caplog) -> None:
    """The example grids and the sanity check explain images again: their engine warnings name
    the images' ids, as the scoring pass's do, never batch positions such as ``image(s) [0]``."""
    model, spec = Net(2).eval(), _spec(2)
    with torch.no_grad():
        model.fc.weight[1] = -model.fc.weight[1].abs()  # class 1: no positive evidence anywhere
    samples = [
        Sample(f"neg{k}", f"neg{k}", objects=(GroundTruth("x", (1,), (0, 0, 32, 32)),), image=im)
        for k, im in enumerate(_images()[:2])
    ]
    config = _config(metrics=["pointing", "sanity"], sanity_images=1)
    config.methods = ["gradcam"]
    with caplog.at_level("WARNING", logger="camscope"):
        run_evaluation(model, spec, samples, config, tmp_path / "ev", progress=False, examples=1)
    said = [r.getMessage() for r in caplog.records if "zero everywhere" in r.getMessage()]
    assert said and all("neg" in m for m in said), said
    assert not any("image(s) [" in m for m in said), said

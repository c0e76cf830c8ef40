"""Every command that classifies reports the class and probability the library reports.

For each head of ``tests/heads.py`` (softmax, single logit saying "yes" and saying "no",
multi-label, tuple and dict outputs) the library's answer is :func:`camscope.explain`'s
``Explanation.prediction`` on the same preprocessed images (itself checked against a softmax or
sigmoid worked out here from the raw logits). Then ``camscope predict``, ``camscope explain``
(``summary.json``, and the Parquet rows of ``--format parquet``), the viewer's API, ``camscope
evaluate``, ``failures``, ``adversarial``, ``audit`` and ``embed`` run on the same images and
must report the same class and the same probability (within 1e-6; files round to 6 decimals).

Labelled commands get class folders whose labels are chosen from the library's answer: the
predicted class (evaluate, audit, embed, so their true class is the predicted one) or another
class (failures, which lists only the misclassified images).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import heads
import numpy as np
import pytest
import torch
from PIL import Image

import camscope
from camscope.cli.main import main
from camscope.io import load_image, preprocess

NAMES = list(heads.HEADS)
IMAGES = 3
TOLERANCE = 1e-6


@dataclass
class Reference:
    """The library's answer for one head on the test images."""

    name: str
    model_name: str  # as the commands load it
    spec: Any
    multilabel: bool
    paths: list[Path]
    classes: list[int]  # top-1 class of each image
    probabilities: torch.Tensor  # (images, classes): every class's probability

    def p(self, i: int, c: int | None = None) -> float:
        return float(self.probabilities[i, self.classes[i] if c is None else c])

    def flags(self) -> list[str]:
        return ["--multilabel"] if self.multilabel else []


def _by_hand(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Every class's probability: a single logit has [1 - sigmoid(z), sigmoid(z)]."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    """Random 16 x 16 RGB pictures (the models' input size: no resizing anywhere)."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(5)
    paths = []
    for i in range(IMAGES):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module", params=NAMES)
def ref(request, pictures) -> Reference:
    name = request.param
    multilabel = heads.HEADS[name]
    model, spec = camscope.load_model(f"heads:{name}")
    x = torch.cat([preprocess(load_image(p), spec) for p in pictures])
    res = camscope.explain(model, x, "gradcam", targets="top1", multilabel=multilabel)
    prediction = res.prediction
    assert prediction is not None
    raw = heads.load(name)[0](x)
    logits = (
        raw
        if isinstance(raw, torch.Tensor)
        else raw[0]
        if isinstance(raw, tuple)
        else raw["logits"]
    )
    expected = _by_hand(logits.detach(), multilabel)
    torch.testing.assert_close(prediction.probabilities, expected, rtol=0, atol=TOLERANCE)
    classes = [int(c) for c in res.targets.reshape(-1)]
    assert classes == expected.argmax(1).tolist()
    assert [float(v) for v in res.probabilities.reshape(-1)] == pytest.approx(
        [float(expected[i, c]) for i, c in enumerate(classes)], abs=TOLERANCE
    )
    if name in ("yes", "no"):  # the two sides of a single-logit model, each sure of itself
        assert set(classes) == {1 if name == "yes" else 0}
        assert min(float(expected[i, c]) for i, c in enumerate(classes)) > 0.99
    return Reference(name, f"heads:{name}", spec, multilabel, pictures, classes, expected)


def _run(*argv: str) -> None:
    code = main([str(a) for a in argv])
    assert code == 0, f"camscope {' '.join(map(str, argv))} exited {code}"


def _folders(root: Path, ref: Reference, label_of) -> Path:
    """Class folders holding the pictures, each under ``label_of(i)``'s class name."""
    for i, path in enumerate(ref.paths):
        target = root / ref.spec.class_names[label_of(i)] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return root


def _index(path_or_id: str) -> int:
    return int(Path(str(path_or_id)).stem.removeprefix("img"))


def test_predict(ref, capsys) -> None:
    _run("predict", *ref.paths, "--model", ref.model_name, "--json", *ref.flags())
    records = json.loads(capsys.readouterr().out)["images"]
    assert len(records) == IMAGES
    for record in records:
        i = _index(record["source"])
        top = record["predictions"][0]
        assert top["class"] == ref.classes[i]
        assert top["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)


def test_explain_pictures(ref, tmp_path) -> None:
    out = tmp_path / "out"
    _run("explain", *ref.paths, "--model", ref.model_name, "--out", out, *ref.flags())
    records = json.loads((out / "summary.json").read_text())["images"]
    assert len(records) == IMAGES
    for record in records:
        i = _index(record["source"])
        for entry in (record["target"], record["top5"][0]):
            assert entry["class"] == ref.classes[i]
            assert entry["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)


def test_explain_parquet(ref, tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "images"
    folder.mkdir()
    for path in ref.paths:
        (folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    _run("explain", folder, "--format", "parquet", "--model", ref.model_name, "--out", out,
         "--batch-size", "2", "--decode-workers", "0", *ref.flags())  # fmt: skip
    rows = [r for f in sorted(out.glob("maps-*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == IMAGES
    for row in rows:
        i = _index(row["id"])
        assert row["target"] == ref.classes[i] == row["top5"][0]["class"]
        assert row["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)
        assert row["top5"][0]["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)


def test_serve(ref) -> None:
    from fastapi.testclient import TestClient

    from camscope.serve.viewer.app import ServeConfig, create_app
    from camscope.serve.viewer.pool import ModelPool

    multilabel = [ref.model_name] if ref.multilabel else []
    pool = ModelPool([ref.model_name], multilabel=multilabel)
    client = TestClient(create_app(ServeConfig(models=[ref.model_name]), pool=pool))
    for i, path in enumerate(ref.paths):
        reply = client.post(
            "/api/explain",
            files={"image": (path.name, path.read_bytes(), "image/png")},
            data={"model": ref.model_name, "overlays": "false"},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        for entry in (body["targets"][0], body["top5"][0]):
            assert entry["index"] == ref.classes[i]
            assert entry["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)


def test_evaluate(ref, tmp_path) -> None:
    """Each picture annotated (one box) with the class the library predicts: ``top1`` is that
    class and ``p_target`` its probability (a multi-label model with ``--multilabel``), and the
    Average Drop is computed from the same kind of probability."""
    rows_csv = [f"{p.name},{ref.spec.class_names[ref.classes[i]]},2,2,12,12" for i, p in
                enumerate(ref.paths)]  # fmt: skip
    for path in ref.paths:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "boxes.csv").write_text("\n".join(rows_csv) + "\n")
    out = tmp_path / "ev"
    _run("evaluate", "--data", tmp_path / "boxes.csv", "--model", ref.model_name,
         "--methods", "gradcam", "--metrics", "loc,drop", "--out", out, "--no-progress",
         "--examples", "0", *ref.flags())  # fmt: skip
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == IMAGES
    model, _ = camscope.load_model(ref.model_name)
    x = torch.cat([preprocess(load_image(p), ref.spec) for p in ref.paths])
    res = camscope.explain(
        model, x, "gradcam", targets=list(ref.classes), multilabel=ref.multilabel
    )
    black = ((0.0 - torch.tensor(ref.spec.mean)) / torch.tensor(ref.spec.std)).view(1, -1, 1, 1)
    masked = black + res.maps["gradcam"][:, None] * (x - black)
    p_map = camscope.explain(model, masked, "gradcam", targets=list(ref.classes),
                             multilabel=ref.multilabel).probabilities  # fmt: skip
    assert p_map is not None
    for row in rows:
        i = _index(row["id"])
        assert row["top1"] == row["target"] == ref.classes[i] and row["top1_correct"]
        assert row["p_target"] == pytest.approx(ref.p(i), abs=TOLERANCE)
        full = ref.p(i)
        drop = 100 * max(0.0, full - float(p_map[i])) / full
        assert row["avg_drop"] == pytest.approx(drop, abs=1e-3)


def test_failures(ref, tmp_path) -> None:
    """Every picture labelled with a class the model does not predict, so every one is listed
    with its predicted and its true class."""
    n = ref.probabilities.shape[1]
    data = _folders(tmp_path / "data", ref, lambda i: (ref.classes[i] + 1) % n)
    out = tmp_path / "out"
    _run("failures", "--data", data, "--model", ref.model_name, "--out", out, "--no-progress",
         *ref.flags())  # fmt: skip
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert len(failures) == IMAGES
    for record in failures:
        i = _index(record["path"])
        true = (ref.classes[i] + 1) % n
        assert record["predicted_class"] == ref.classes[i] and record["true_class"] == true
        assert record["predicted_probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)
        assert record["true_probability"] == pytest.approx(ref.p(i, true), abs=TOLERANCE)
        assert record["top5"][0]["class"] == ref.classes[i]


def test_adversarial(ref, tmp_path) -> None:
    """The clean class and probability are the library's; so are those of the saved adversarial
    input (``<stem>.adv.npy``, exactly what the model classified)."""
    out = tmp_path / "out"
    _run("adversarial", *ref.paths, "--model", ref.model_name, "--attack", "fgsm",
         "--eps", "8/255", "--out", out, "--no-progress", *ref.flags())  # fmt: skip
    records = json.loads((out / "adversarial.json").read_text())["images"]
    assert len(records) == IMAGES
    model, spec = camscope.load_model(ref.model_name)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    for record in records:
        i = _index(record["path"])
        assert record["clean_class"] == ref.classes[i]
        assert record["clean_probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)
        adv = torch.from_numpy(np.load(out / f"{record['stem']}.adv.npy")).permute(2, 0, 1)[None]
        library = camscope.explain(
            model, (adv - mean) / std, "gradcam", multilabel=ref.multilabel
        ).prediction
        assert library is not None
        a = int(library.classes[0])
        assert record["adversarial_class"] == a
        assert record["adversarial_probability"] == pytest.approx(
            library.probability(0, a), abs=TOLERANCE
        )
        assert record["original_probability_adversarial"] == pytest.approx(
            library.probability(0, ref.classes[i]), abs=TOLERANCE
        )


def test_audit(ref, tmp_path) -> None:
    data = _folders(tmp_path / "data", ref, lambda i: ref.classes[i])
    out = tmp_path / "out"
    _run("audit", "--data", data, "--model", ref.model_name, "--out", out, "--no-progress",
         "--examples", "0", *ref.flags())  # fmt: skip
    lines = (out / "images.jsonl").read_text().splitlines()
    assert len(lines) == IMAGES
    for line in lines:
        record = json.loads(line)
        i = _index(record["id"])
        assert record["predicted"] == ref.classes[i]
        assert record["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)


def test_embed(ref, tmp_path) -> None:
    data = _folders(tmp_path / "data", ref, lambda i: ref.classes[i])
    out = tmp_path / "out"
    _run("embed", "--data", data, "--model", ref.model_name, "--out", out, "--no-progress",
         "--layers", "last", *ref.flags())  # fmt: skip
    images = json.loads((out / "embeddings.json").read_text())["images"]
    assert len(images) == IMAGES
    for image in images:
        i = _index(image["id"])
        assert image["predicted_class"] == ref.classes[i] and image["correct"] is True
        assert image["predicted"] == ref.spec.class_names[ref.classes[i]]
        assert image["probability"] == pytest.approx(ref.p(i), abs=TOLERANCE)

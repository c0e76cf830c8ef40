"""Human studies: blind trials, one durable row per click, restart continues, summaries."""

from __future__ import annotations

import csv
import json
import os

import pytest
from fastapi.testclient import TestClient

from camscope.cli.main import main
from camscope.errors import UsageError
from camscope.evaluation.summary import wilson_interval
from camscope.serve.study import answers
from camscope.serve.study.app import create_study_app
from camscope.serve.study.session import StudyOptions, prepare_study
from camscope.serve.viewer.pool import ModelPool


def discrimination(folder, lite0, **changes):
    options = StudyOptions(
        kind="class-discrimination", data="builtin:12", methods="gradcam", seed=7
    )
    options = StudyOptions(**{**options.__dict__, **changes})
    pool = ModelPool.of_loaded({"efficientnet_lite0": lite0})
    return prepare_study(options, folder, pool=pool)


def read_rows(path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def open_session(client: TestClient, participant: str) -> str:
    reply = client.post("/api/study/session", data={"participant": participant})
    assert reply.status_code == 200, reply.text
    return reply.json()["session"]


def next_trial(client: TestClient, session: str) -> dict:
    reply = client.get("/api/study/next", params={"session": session})
    assert reply.status_code == 200, reply.text
    return reply.json()


def post_answer(client: TestClient, session: str, ticket: str, choice: str, ms=900):
    fields = {"session": session, "trial": ticket, "choice": choice}
    if ms is not None:
        fields["ms"] = str(ms)
    return client.post("/api/study/answer", data=fields)


def test_class_discrimination_flow_and_restart(tmp_path, lite0, monkeypatch) -> None:
    study = discrimination(tmp_path, lite0)
    # builtin:12 holds three two-object images: 2 objects x 1 method each
    assert len(study.trials) == 6
    assert all(len(set(t.labels)) == 2 and t.answer in t.labels for t in study.trials)
    client = TestClient(create_study_app(study))
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(answers.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    order = study.order("ann")
    token = open_session(client, "ann")
    served = study.sessions.get(token)
    picked = []
    for step in range(3):
        trial = next_trial(client, token)
        assert trial["position"] == step and served.trial_of(trial["trial"]) == order[step]
        assert "gradcam" not in json.dumps(trial) and "efficientnet" not in json.dumps(trial)
        assert len(trial["pictures"]) == 1 and len(trial["options"]) == 2
        right = study.trials[order[step]].answer
        choice = right if step < 2 else next(o["id"] for o in trial["options"] if o["id"] != right)
        picked.append((trial["trial"], choice))
        reply = post_answer(client, token, trial["trial"], choice)
        assert reply.status_code == 200, reply.text
        assert len(read_rows(study.answers_path)) == step + 1  # on disk before the reply
    assert len(synced) == 3
    again = post_answer(client, token, *picked[0])
    assert again.status_code == 400 and "already answered" in again.json()["detail"]
    wrong = post_answer(client, token, next_trial(client, token)["trial"], "dog")
    assert wrong.status_code == 400
    rows = read_rows(study.answers_path)
    assert [r["correct"] for r in rows] == ["1", "1", "0"]
    assert [int(r["trial"]) for r in rows] == order[:3] and rows[0]["seed"] == "7"
    # a crash in the middle of a write leaves a partial last row: the restart drops it
    with study.answers_path.open("a", encoding="utf-8") as handle:
        handle.write("2026-01-01T00:00:00,ann,3,")
    restarted = discrimination(tmp_path, lite0, seed=None)
    assert restarted.seed == 7 and len(restarted.log.rows) == 3
    position, trial = restarted.next_trial("ann")
    assert position == 3 and trial.id == order[3]
    assert restarted.next_trial("bob")[1].id == restarted.order("bob")[0]
    assert restarted.order("bob") != order  # each participant has an order of their own
    with pytest.raises(UsageError, match="other settings"):
        discrimination(tmp_path, lite0, methods="gradcam,layercam")
    with pytest.raises(UsageError, match="--seed 7"):
        discrimination(tmp_path, lite0, seed=8)
    client = TestClient(create_study_app(restarted))
    stale = post_answer(client, token, picked[0][0], picked[0][1])  # the session before the restart
    assert stale.status_code == 401 and "enter your name again" in stale.json()["detail"]
    token = open_session(client, "ann")
    while not (trial := next_trial(client, token))["done"]:
        right = restarted.trials[restarted.sessions.get(token).trial_of(trial["trial"])].answer
        assert post_answer(client, token, trial["trial"], right, ms=None).status_code == 200
    assert len(read_rows(restarted.answers_path)) == 6
    assert read_rows(restarted.answers_path)[-1]["ms"] == ""  # not measured: left empty


def test_summaries(tmp_path, lite0, capsys) -> None:
    study = discrimination(tmp_path, lite0)
    for i, trial_id in enumerate(study.order("ann")[:5]):
        trial = study.trials[trial_id]
        other = next(label for label in trial.labels if label != trial.answer)
        study.answer("ann", trial_id, trial.answer if i < 4 else other, 1000)
    assert main(["study", "summarize", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 answers from 1 participant" in out
    low, high = wilson_interval(4, 5)  # 0.376, 0.964
    line = next(line for line in out.splitlines() if line.startswith("gradcam"))
    assert line.split()[1:4] == ["5", "4", "80.0%"]
    assert f"{100 * low:.1f}% - {100 * high:.1f}%" in line
    assert main(["study", "summarize", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["methods"][0]["accuracy"] == 0.8 and data["answers"] == 5
    assert main(["study", "summarize", str(tmp_path / "nothing")]) == 2


def test_trust_study_compares_two_models_blind(tmp_path, lite0) -> None:
    pool = ModelPool.of_loaded({"model-a": lite0, "model-b": lite0})
    options = StudyOptions(
        kind="trust", data="builtin:3", methods="gradcam,eigencam", models=["model-a", "model-b"]
    )
    study = prepare_study(options, tmp_path, pool=pool)
    assert len(study.trials) == 6  # the two copies agree on every image
    client = TestClient(create_study_app(study))
    token = open_session(client, "p1")
    trial = next_trial(client, token)
    assert len(trial["pictures"]) == 2 and trial["label"]
    assert [o["id"] for o in trial["options"]] == ["left", "right", "same"]
    assert "model-a" not in json.dumps(trial) and "gradcam" not in json.dumps(trial)
    assert post_answer(client, token, trial["trial"], "left").status_code == 200
    row = study.log.rows[-1]
    assert row["preferred"] == row["left_model"] and {row["left_model"], row["right_model"]} == {
        "model-a",
        "model-b",
    }
    for choice in ("right", "same", "left"):
        _, nxt = study.next_trial("p1")
        study.answer("p1", nxt.id, choice, 10)
    table = answers.summarize("trust", study.log.rows, ["model-a", "model-b"])
    total = table[-1]
    assert total["n"] == 4 and total["same"] == 1
    assert total["prefer_a"] + total["prefer_b"] == 3
    with pytest.raises(UsageError, match="two different models"):
        prepare_study(
            StudyOptions(kind="trust", data="builtin:3", models=["model-a"]),
            tmp_path / "x",
            pool=pool,
        )

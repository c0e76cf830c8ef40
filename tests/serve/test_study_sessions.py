"""Study answers from the right people only (issue 21, item 3): sessions and tickets, a checked
``ms``, and no spreadsheet formulas in answers.csv."""

from __future__ import annotations

import csv

import pytest
from fastapi.testclient import TestClient
from test_study import discrimination, next_trial, open_session, post_answer

from camscope.cli.main import main
from camscope.serve.study import session
from camscope.serve.study.answers import AnswerLog
from camscope.serve.study.app import create_study_app
from camscope.serve.study.session import SessionBook, SessionUnknown


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, lite0):
    """A class-discrimination study of six trials (builtin:12, one method)."""
    folder = tmp_path_factory.mktemp("study")
    discrimination(folder, lite0)
    return folder


@pytest.fixture
def study(study_dir, lite0, tmp_path):
    """A fresh copy of the study (no answers yet)."""
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(study_dir, folder)
    return discrimination(folder, lite0)


def test_answers_are_taken_only_for_trials_served_to_the_session(study) -> None:
    """A page elsewhere used to answer any trial in any participant's name (and the participant
    could then not answer it). Now an answer needs the session that was served the trial."""
    client = TestClient(create_study_app(study), base_url="http://localhost")
    ann = open_session(client, "ann")
    eve = open_session(client, "eve")
    first = next_trial(client, ann)
    choice = first["options"][0]["id"]
    # another session cannot answer ann's trial, nor can a made-up session or ticket
    refused = post_answer(client, eve, first["trial"], choice)
    assert refused.status_code == 400 and "not served to your session" in refused.json()["detail"]
    assert post_answer(client, "forged-token", first["trial"], choice).status_code == 401
    for ticket in ("0", "1", str(study.order("ann")[1]), "x" * 16):
        assert post_answer(client, ann, ticket, choice).status_code == 400
    assert study.log.rows == []  # nothing was recorded
    # the participant's own click goes through
    assert post_answer(client, ann, first["trial"], choice).status_code == 200
    assert [r["participant"] for r in study.log.rows] == ["ann"]


def test_tickets_say_nothing_about_the_trial(study) -> None:
    """Trial ids follow the data (with two methods, even ids were the first method); the page
    gets random tickets instead, a different one in every session for the same trial."""
    client = TestClient(create_study_app(study), base_url="http://localhost")
    tickets = []
    for _ in range(3):
        token = open_session(client, "ann")
        trial = next_trial(client, token)
        assert study.sessions.get(token).trial_of(trial["trial"]) == study.order("ann")[0]
        tickets.append(trial["trial"])
    assert len(set(tickets)) == 3
    assert not any(t.isdigit() for t in tickets) and all(len(t) >= 16 for t in tickets)
    # served again in one session, a trial keeps its ticket
    assert next_trial(client, token)["trial"] == tickets[-1]


@pytest.mark.parametrize("ms", ["0", "-5", "nan", "inf", "-inf", "1e12", "86400001"])
def test_ms_must_be_a_positive_time_of_at_most_a_day(study, ms) -> None:
    client = TestClient(create_study_app(study), base_url="http://localhost")
    token = open_session(client, "ann")
    trial = next_trial(client, token)
    reply = post_answer(client, token, trial["trial"], trial["options"][0]["id"], ms=ms)
    assert reply.status_code == 400, reply.text
    assert "positive number of at most 86400000" in reply.json()["detail"]
    assert post_answer(client, token, trial["trial"], "x", ms="abc").status_code == 422
    assert study.log.rows == []
    ok = post_answer(client, token, trial["trial"], trial["options"][0]["id"], ms="1234.6")
    assert ok.status_code == 200 and study.log.rows[-1]["ms"] == "1235"


def test_spreadsheet_formulas_are_written_as_text(study, capsys) -> None:
    """OWASP's CSV-injection advice: a cell starting with = + - @ tab or CR gets a leading '."""
    names = ['=HYPERLINK("http://evil.example","x")', "@SUM(A1)", "+1+2", "-2+3", "'quoted"]
    for name in names:
        _, trial = study.next_trial(name)
        study.answer(name, trial.id, trial.answer, 1000)
    with study.answers_path.open(newline="", encoding="utf-8") as handle:
        written = [row["participant"] for row in csv.DictReader(handle)]
    assert written == [f"'{n}" for n in names]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in written)
    # read back exactly: each participant continues where they were, summaries count them
    again = AnswerLog(study.answers_path)
    assert [r["participant"] for r in again.rows] == names
    assert all(len(again.answered(n)) == 1 for n in names)
    assert main(["study", "summarize", str(study.folder)]) == 0
    assert f"5 answers from {len(names)} participant(s)" in capsys.readouterr().out


def test_cells_neutralised_and_restored() -> None:
    from camscope.serve.study.answers import neutralise_cell, restore_cell

    for text in ("=1+1", "+cmd", "-cmd", "@cmd", "\tx", "\rx", "'x", "''x"):
        assert neutralise_cell(text).startswith("'") and restore_cell(neutralise_cell(text)) == text
    for text in ("-1", "+2.5", "1e-3", "-0.5E+2", "cat", "", "a=b"):
        assert neutralise_cell(text) == text and restore_cell(text) == text


def test_the_server_keeps_at_most_max_sessions_dropping_the_least_recently_used(
    monkeypatch,
) -> None:
    monkeypatch.setattr(session, "MAX_SESSIONS", 2)
    book = SessionBook()
    first, second = book.open("ann"), book.open("bob")
    book.get(first)  # used again: bob's session is now the least recently used
    third = book.open("cy")
    with pytest.raises(SessionUnknown, match="enter your name again"):
        book.get(second)
    assert book.get(first).participant == "ann" and book.get(third).participant == "cy"

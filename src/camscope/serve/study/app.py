"""The FastAPI application of ``camscope serve --study``: the study page and its small API.

``GET /`` is the study page; ``GET /api/study`` says the kind, question and number of trials;
``POST /api/study/session`` (form ``participant``) opens a session and answers its token;
``GET /api/study/next?session=T`` gives the session's next trial (pictures as base64 PNG, the
answer options and a ticket; no method, model or trial id); ``POST /api/study/answer`` (form
``session``, ``trial`` = the ticket, ``choice``, ``ms``) records one click and answers only after
the row is on disk (:mod:`.answers`). Answers are accepted only for trials served to that session
(:mod:`.session`); changes sent by another site's page are refused (:mod:`..guards`). The
viewer's routes are absent, so participants cannot see which method drew a map.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Form, Query

from ..web import base_app, run_work
from .session import QUESTIONS, Study, check_participant

_LABELS = {"left": "Left", "right": "Right", "same": "About the same"}


def create_study_app(study: Study) -> FastAPI:
    app = base_app(f"camscope study: {study.kind}", 0, "study.html", study.explainer.jobs)
    app.state.study = study

    @app.get("/healthz", summary="Liveness: the server answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "study": study.kind, "trials": len(study.trials)}

    @app.get("/api/study", summary="The study's kind, question and number of trials")
    async def about() -> dict[str, Any]:
        return {"kind": study.kind, "question": QUESTIONS[study.kind], "total": len(study.trials)}

    @app.post("/api/study/session", summary="Open a participant's session; answers its token")
    async def open_session(
        participant: Annotated[str, Form(description="name or code")],
    ) -> dict[str, Any]:
        who = check_participant(participant)
        return {"session": study.sessions.open(who), "participant": who}

    @app.get("/api/study/next", summary="The session's next trial (blind: no method names)")
    async def next_trial(
        session: Annotated[str, Query(description="the token of POST /api/study/session")],
    ) -> dict[str, Any]:
        mine = study.sessions.get(session)
        who = mine.participant

        def work() -> dict[str, Any]:
            found = study.next_trial(who)
            total = len(study.trials)
            if found is None:
                return {"done": True, "position": total, "total": total}
            position, trial = found
            options, _ = study.layout(who, trial)
            return {
                "done": False,
                "position": position,
                "total": total,
                "trial": mine.ticket_for(trial.id),
                "question": QUESTIONS[study.kind],
                "label": trial.labels[0] if study.kind == "trust" else "",
                "pictures": study.pictures(who, trial),
                "options": [{"id": o, "label": _LABELS.get(o, o)} for o in options],
            }

        return await run_work(work)

    @app.post("/api/study/answer", summary="Record one answer (durable before the reply)")
    async def answer(
        session: Annotated[str, Form(description="the token of POST /api/study/session")],
        trial: Annotated[str, Form(description="the trial's ticket from GET /api/study/next")],
        choice: Annotated[str, Form()],
        ms: Annotated[
            float | None,
            Form(description="milliseconds from showing the trial to the click (0 < ms <= a day)"),
        ] = None,
    ) -> dict[str, Any]:
        mine = study.sessions.get(session)
        trial_id = mine.trial_of(trial)
        row = await run_work(lambda: study.answer(mine.participant, trial_id, choice, ms))
        return {"recorded": True, "position": int(row["position"])}

    return app

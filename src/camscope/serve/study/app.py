"""The FastAPI application of ``camscope serve --study``: the study page and its small API.

``GET /`` is the study page; ``GET /api/study`` says the kind, question and number of trials;
``GET /api/study/next?participant=P`` gives P's next trial (pictures as base64 PNG and the answer
options; no method or model name); ``POST /api/study/answer`` records one click and answers only
after the row is on disk (:mod:`.answers`). The viewer's routes are absent, so participants
cannot see which method drew a map.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Form, Query
from fastapi.responses import FileResponse

from ..web import STATIC, base_app, run_work
from .session import QUESTIONS, Study, check_participant

_LABELS = {"left": "Left", "right": "Right", "same": "About the same"}


def create_study_app(study: Study) -> FastAPI:
    app = base_app(f"camscope study: {study.kind}", upload_limit=0)
    app.state.study = study
    app.state.jobs = study.explainer.jobs  # stopped all at once when the server shuts down

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "study.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", summary="Liveness: the server answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "study": study.kind, "trials": len(study.trials)}

    @app.get("/api/study", summary="The study's kind, question and number of trials")
    async def about() -> dict[str, Any]:
        return {"kind": study.kind, "question": QUESTIONS[study.kind], "total": len(study.trials)}

    @app.get("/api/study/next", summary="The participant's next trial (blind: no method names)")
    async def next_trial(
        participant: Annotated[str, Query(description="name or code")],
    ) -> dict[str, Any]:
        who = check_participant(participant)

        def work() -> dict[str, Any]:
            found = study.next_trial(who)
            total = len(study.trials)
            if found is None:
                return {"done": True, "position": total, "total": total}
            position, trial = found
            options, _ = study.layout(who, trial)
            labels = [_LABELS.get(o, o) for o in options]
            return {
                "done": False,
                "position": position,
                "total": total,
                "trial": trial.id,
                "question": QUESTIONS[study.kind],
                "label": trial.labels[0] if study.kind == "trust" else "",
                "pictures": study.pictures(who, trial),
                "options": [{"id": o, "label": label} for o, label in zip(options, labels)],
            }

        return await run_work(work)

    @app.post("/api/study/answer", summary="Record one answer (durable before the reply)")
    async def answer(
        participant: Annotated[str, Form()],
        trial: Annotated[int, Form()],
        choice: Annotated[str, Form()],
        ms: Annotated[
            int, Form(description="milliseconds from showing the trial to the click")
        ] = 0,
    ) -> dict[str, Any]:
        who = check_participant(participant)
        row = await run_work(lambda: study.answer(who, trial, choice, ms))
        return {"recorded": True, "trial": int(row["trial"]), "position": int(row["position"])}

    return app

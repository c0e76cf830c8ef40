"""What the viewer's and the study's FastAPI applications share.

:func:`base_app` builds an application with camscope's error answers (``{"detail": message}`` with
the ``http_status`` of the error's class, 503 for a model that cannot be loaded, else 400: the
request's fault), the body limits (:class:`.limits.BodyLimit`), the same-origin rule for
state-changing requests (:class:`.guards.SameOrigin`), the pages' static files and the OpenAPI page at ``/docs``, whose Swagger UI files come from the ``fastapi-offline``
package instead of a CDN: the page works without a network, as the rest of the viewer does.
:func:`run_work` runs blocking work on a worker thread; :func:`until_disconnected` sets a job's
flag when the client goes away before its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..errors import CamscopeError, ModelLoadError
from ..outputs import camscope_version
from .guards import SameOrigin
from .limits import ENVELOPE, SMALL_BODY, BodyLimit, UploadTooLarge, too_large_message

if TYPE_CHECKING:
    from .viewer.jobs import Job, JobBoard

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
T = TypeVar("T")


def base_app(
    title: str, upload_limit: int, page: str, jobs: JobBoard, description: str = ""
) -> FastAPI:
    """A FastAPI app with camscope's error answers, body limits, same-origin rule, the page
    ``static/<page>`` at ``/``, an offline ``/docs`` page and ``jobs`` (stopped all at once when
    the server shuts down). Routes that take an image (``/api/explain``, ``/api/preview`` and the
    task routes) take uploads of ``upload_limit`` bytes, ``/api/explain-task`` two of them (the
    image and a region mask or a reference); every other body is capped at
    :data:`.limits.SMALL_BODY`."""
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        title=title, version=camscope_version(), description=description, redoc_url=None
    )

    @app.exception_handler(CamscopeError)
    async def camscope_error(_request: Request, err: CamscopeError) -> JSONResponse:
        status = getattr(err, "http_status", 503 if isinstance(err, ModelLoadError) else 400)
        return JSONResponse({"detail": str(err)}, status_code=status)

    uploads = (
        "/api/explain",
        "/api/preview",
        "/api/detect",
        "/api/segment-classes",
        "/api/concepts",
    )

    def limit_for(path: str) -> int:
        if path.endswith("/api/explain-task"):
            return 2 * upload_limit + ENVELOPE
        return upload_limit + ENVELOPE if path.endswith(uploads) else SMALL_BODY

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(SameOrigin)  # added last: runs first, before any body is read
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.jobs = jobs

    @app.get("/", include_in_schema=False)
    async def home() -> FileResponse:
        return FileResponse(STATIC / page, headers={"Cache-Control": "no-cache"})

    return app


async def run_work(fn: Callable[[], T], limiter: anyio.CapacityLimiter | None = None) -> T:
    """Run blocking work on a worker thread (of ``limiter``'s pool; default: anyio's);
    unexpected errors are logged and answered 500."""
    try:
        return await anyio.to_thread.run_sync(fn, limiter=limiter)
    except (CamscopeError, HTTPException):
        raise
    except Exception as err:
        log.exception("internal error")
        raise HTTPException(500, f"internal error: {type(err).__name__}: {err}") from err


async def until_disconnected(request: Request, job: Job, fn: Callable[[], T]) -> T:
    """:func:`run_work` ``fn``, setting ``job``'s cancel flag if the client disconnects first
    (the work stops at its next check instead of holding the model for nobody)."""

    async def watch() -> None:
        while True:  # the body is read: the next message is the disconnect
            message = await request.receive()
            if message["type"] == "http.disconnect":
                log.info("client went away: cancelling %s", job.id)
                job.cancel.set()
                return

    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            result = await run_work(fn)
        except Exception as err:  # raised below, not wrapped in the task group's ExceptionGroup
            failure = err
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    if upload.size is not None and upload.size > limit:
        raise UploadTooLarge(too_large_message(upload.size, limit))
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(too_large_message(None, limit))
    return data


def upload_name(upload: UploadFile) -> str:
    """The client's file name, only for messages (never a path here)."""
    name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:120] or "upload"

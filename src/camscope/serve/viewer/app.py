"""The FastAPI application: the viewer page, the REST API and (``--study``) the human studies.

Routes (OpenAPI at ``/docs``): ``POST /api/explain``, ``GET /api/methods``, ``GET /api/models``,
``POST /api/detect``, ``POST /api/explain-task``, ``POST /api/segment-classes``,
``POST /api/concepts`` (detectors, segmentation models, DFF concepts: :mod:`.tasks`),
``GET /api/layers?model=M``, ``GET /api/classes?model=M``, ``GET /api/colormaps``,
``GET /api/config``, ``GET /api/demo/{name}``, ``POST /api/fetch`` (an image URL, unless
``--no-url``), ``POST /api/preview``, ``GET /api/progress?job=ID``, ``POST /api/cancel``,
``GET /healthz``; ``/`` is the page and ``/static/`` its files. Every URL the page uses is
relative, so the server also works behind a reverse proxy under a path prefix.

Model work runs on worker threads (``anyio.to_thread``), never on the event loop; a request on a
model waits for that model's lock (:mod:`.pool`). Errors camscope raises on purpose become JSON
``{"detail": message}`` answers with the status of :func:`.limits.status_of`; anything else is
logged with its traceback and answered 500. The server goes on serving after every bad request.

Example:
    >>> from camscope.serve.viewer.app import ServeConfig, create_app  # doctest: +SKIP
    >>> app = create_app(ServeConfig(models=["efficientnet_lite0"]))  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from ...errors import CamscopeError, UsageError
from ...io import DEFAULT_MAX_PIXELS, DEMO_IMAGES
from ...models.default import DEFAULT_MODEL
from ...viz import DEFAULT_COLORMAP, RECOMMENDED_COLORMAPS
from ..limits import (
    ENVELOPE,
    SMALL_BODY,
    BodyLimit,
    UploadTooLarge,
    URLFetchDisabled,
    status_of,
    too_large_message,
)
from .catalogue import colormap_luts, method_catalogue
from .encode import display_copy, png_bytes
from .jobs import JobBoard
from .pool import ModelPool
from .service import MAX_TOPK, Explainer, ExplainRequest, LazyImage
from .tasks import TaskCall, TaskService, parse_box

log = logging.getLogger(__name__)


def _installed_version() -> str:
    """camscope's version as installed (the package root is not this room's to import)."""
    try:
        return importlib.metadata.version("camscope")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


__version__ = _installed_version()

STATIC = Path(__file__).resolve().parents[1] / "static"  # shared with the study page
T = TypeVar("T")


@dataclass
class ServeConfig:
    """Everything ``camscope serve`` decides at start; see ``camscope serve --help``."""

    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    device: str = "cpu"
    allow_url: bool = True
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    url_timeout: float = 10.0
    input_entries: int = 32
    map_entries: int = 128


class Entry(BaseModel):
    index: int
    label: str
    probability: float


class MapOut(BaseModel):
    overlay_png: str
    map: str
    shape: list[int]


class ExplainOut(BaseModel):
    """The answer of ``POST /api/explain``."""

    model: str
    layer: str
    targets: list[Entry]
    top5: list[Entry]
    maps: dict[str, MapOut]
    seconds: dict[str, float]


async def run_work(fn: Callable[[], T]) -> T:
    """Run model work on a worker thread; unexpected errors are logged and answered 500."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except (CamscopeError, HTTPException):
        raise
    except Exception as err:
        log.exception("internal error")
        raise HTTPException(500, f"internal error: {type(err).__name__}: {err}") from err


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


def base_app(title: str, upload_limit: int) -> FastAPI:
    """A FastAPI app with camscope's error answers and body limits."""
    app = FastAPI(title=title, version=__version__, description=__doc__)

    @app.exception_handler(CamscopeError)
    async def camscope_error(_request: Request, err: CamscopeError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=status_of(err))

    uploads = (
        "/api/explain",
        "/api/preview",
        "/api/detect",
        "/api/segment-classes",
        "/api/concepts",
    )

    def limit_for(path: str) -> int:
        if path.endswith("/api/explain-task"):  # the image and a region mask or a reference
            return 2 * upload_limit + ENVELOPE
        return upload_limit + ENVELOPE if path.endswith(uploads) else SMALL_BODY

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def create_app(
    config: ServeConfig | None = None,
    *,
    pool: ModelPool | None = None,
    explainer: Explainer | None = None,
) -> FastAPI:
    """The viewer's application. ``pool`` / ``explainer`` replace the ones ``config`` describes
    (tests pass models already in memory)."""
    config = config or ServeConfig()
    pool = pool or (explainer.pool if explainer else ModelPool(config.models, device=config.device))
    explainer = explainer or Explainer(
        pool, JobBoard(), input_entries=config.input_entries, map_entries=config.map_entries
    )
    app = base_app("camscope viewer", config.max_upload_bytes)
    app.state.explainer = explainer
    demo_cache: dict[str, bytes] = {}
    demo_lock = threading.Lock()
    luts = colormap_luts()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", summary="Liveness: the server answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "models": pool.names}

    @app.get("/api/config", summary="What the page needs to know about this server")
    async def server_config() -> dict[str, Any]:
        return {
            "version": __version__,
            "url_fetch": config.allow_url,
            "max_upload_bytes": config.max_upload_bytes,
            "max_pixels": config.max_pixels,
            "demo_images": list(DEMO_IMAGES),
            "default_model": pool.default,
            "default_colormap": DEFAULT_COLORMAP,
        }

    @app.get("/api/methods", summary="Every registered CAM method with its cost")
    async def methods() -> list[dict[str, Any]]:
        return [vars(info) for info in method_catalogue()]

    @app.get("/api/models", summary="The models this server offers (the first is the default)")
    async def models() -> list[dict[str, Any]]:
        out = []
        for name in pool.names:
            info = pool.get(name).describe() if pool.loaded(name) else {"name": name}
            out.append({**info, "default": name == pool.default, "loaded": pool.loaded(name)})
        return out

    @app.get(
        "/api/layers", summary="Layers of a model with output shapes; auto/first/middle/last marked"
    )
    async def layers(
        model: Annotated[str, Query(description="model name (default: the first)")] = "",
    ) -> dict[str, Any]:
        slot = await run_work(lambda: pool.get(model))
        rows = await run_work(slot.layer_rows)
        return {
            "model": slot.name,
            "layers": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "shape": list(r.output_shape),
                    "layout": r.layout,
                    "marks": list(r.marks),
                }
                for r in rows
            ],
        }

    @app.get("/api/classes", summary="The class names of a model, by index")
    async def classes(
        model: Annotated[str, Query(description="model name (default: the first)")] = "",
    ) -> dict[str, Any]:
        slot = await run_work(lambda: pool.get(model))
        return {"model": slot.name, "classes": list(slot.spec.class_names)}

    @app.get("/api/colormaps", summary="Colour maps as 256-entry RGB tables (from matplotlib)")
    async def colormaps() -> dict[str, Any]:
        return {"default": DEFAULT_COLORMAP, "colormaps": luts}

    @app.get("/api/demo/{name}", summary="A demo photo (scikit-image) as PNG")
    async def demo(name: str) -> Response:
        if name not in DEMO_IMAGES:
            raise UsageError(f"unknown demo image {name!r}; choose from {', '.join(DEMO_IMAGES)}")

        def load() -> bytes:
            with demo_lock:
                if not demo_cache:
                    from ...io import demo_images

                    demo_cache.update({n: png_bytes(img, 1) for n, img in demo_images()})
                return demo_cache[name]

        return Response(await run_work(load), media_type="image/png")

    @app.post("/api/fetch", summary="Fetch an image URL on the server (off with --no-url); PNG")
    async def fetch(url: Annotated[str, Form(description="http(s) URL of an image")]) -> Response:
        if not config.allow_url:
            raise URLFetchDisabled(
                "fetching URLs is off on this server (--no-url); upload the file"
            )
        if not url.lower().startswith(("http://", "https://")):
            raise UsageError(f"{url[:200]!r} is not an http(s) URL")

        def load() -> bytes:
            from ...io import load_image

            image = load_image(
                url,
                max_pixels=config.max_pixels,
                timeout=config.url_timeout,
                max_bytes=config.max_upload_bytes,
            )
            return png_bytes(image, 1)

        return Response(await run_work(load), media_type="image/png")

    @app.post("/api/preview", summary="Decode an upload and return a display copy as PNG")
    async def preview(image: Annotated[UploadFile, File(description="the image file")]) -> Response:
        data = await read_upload(image, config.max_upload_bytes)
        name = upload_name(image)

        def load() -> bytes:
            from ...io import load_image_bytes

            return png_bytes(
                display_copy(load_image_bytes(data, name, max_pixels=config.max_pixels)), 1
            )

        return Response(await run_work(load), media_type="image/png")

    @app.post(
        "/api/explain",
        summary="Explain an uploaded image with one or more CAM methods",
        response_model=None,
        responses={
            200: {
                "model": ExplainOut,
                "headers": {
                    "X-Camscope-Reused": {"description": "methods taken from earlier requests"},
                    "X-Camscope-Computed": {"description": "methods computed by this request"},
                },
            },
            400: {"description": "bad image, method, layer, target or colour map"},
            409: {"description": "cancelled (POST /api/cancel)"},
            413: {"description": "upload over the cap (--max-upload-mb)"},
        },
    )
    async def explain(
        image: Annotated[
            UploadFile, File(description="the image file (JPEG, PNG, WebP, TIFF, ...)")
        ],
        model: Annotated[
            str, Form(description="a name from GET /api/models (default: the first)")
        ] = "",
        methods: Annotated[
            str, Form(description="comma-separated names from GET /api/methods")
        ] = "gradcam",
        layer: Annotated[
            str,
            Form(
                description="auto, first, middle, last, conv:N, a layer name, or a comma list (fused)",
            ),
        ] = "auto",
        target: Annotated[
            str,
            Form(description=f"a class index, a class name, top1, or topk:K (K <= {MAX_TOPK})"),
        ] = "top1",
        colormap: Annotated[
            str,
            Form(
                description=f"for overlay_png: {', '.join(RECOMMENDED_COLORMAPS)}, ...",
            ),
        ] = DEFAULT_COLORMAP,
        overlays: Annotated[
            bool, Form(description="false: leave overlay_png empty (faster)")
        ] = True,
        job: Annotated[
            str, Form(description="an id of your choice to read progress and cancel")
        ] = "",
    ) -> JSONResponse:
        request = explainer.check(
            ExplainRequest(model, (methods,), layer, target, colormap, overlays)
        )
        data = await read_upload(image, config.max_upload_bytes)
        name = upload_name(image)
        outcome = await run_work(
            lambda: explainer.explain(
                request, LazyImage.from_bytes(data, name, config.max_pixels), job or None
            )
        )
        headers = {
            "X-Camscope-Reused": ",".join(outcome.reused),
            "X-Camscope-Computed": ",".join(outcome.computed),
        }
        return JSONResponse(outcome.body, headers=headers)

    @app.get("/api/progress", summary="Progress of a request sent with job=ID")
    async def progress(
        job: Annotated[str, Query(description="the job id sent with the request")],
    ) -> dict[str, Any]:
        return explainer.jobs.get(job)

    @app.post("/api/cancel", summary="Cancel a request sent with job=ID")
    async def cancel(
        job: Annotated[str, Form(description="the job id sent with the request")],
    ) -> dict[str, Any]:
        return explainer.jobs.cancel(job).as_dict()

    _task_routes(app, TaskService(explainer), config)
    return app


def _task_routes(app: FastAPI, tasks: TaskService, config: ServeConfig) -> None:
    """The routes of detectors, segmentation models and DFF concepts (:mod:`.tasks`). FastAPI
    reads the parameters' annotations in the module's globals: no local name may appear in
    them."""

    async def source(image: UploadFile) -> LazyImage:
        data = await read_upload(image, config.max_upload_bytes)
        return LazyImage.from_bytes(data, upload_name(image), config.max_pixels)

    @app.post("/api/detect", summary="The boxes a detector finds (image pixels)")
    async def detect(
        image: Annotated[UploadFile, File(description="the image file")],
        model: Annotated[str, Form(description="a name from GET /api/models")] = "",
        threshold: Annotated[float, Form(description="least score of a box")] = 0.5,
        cls: Annotated[str, Form(alias="class", description="only boxes of this class")] = "",
    ) -> dict[str, Any]:
        lazy = await source(image)
        return await run_work(lambda: tasks.detect(model, lazy, threshold, cls))

    @app.post(
        "/api/explain-task",
        summary="Maps of a box, a drawn box, a class in a painted region, or the similarity to "
        "a reference image",
    )
    async def explain_task(
        image: Annotated[UploadFile, File(description="the image file")],
        model: Annotated[str, Form(description="a name from GET /api/models")] = "",
        methods: Annotated[str, Form(description="comma-separated method names")] = "gradcam",
        layer: Annotated[str, Form(description="auto, a layer name, ...")] = "auto",
        task: Annotated[
            str, Form(description="auto, detection, segmentation, similarity")
        ] = "auto",
        box: Annotated[str, Form(description="x0,y0,x1,y1 in image pixels (detection)")] = "",
        threshold: Annotated[float, Form(description="detection: least score")] = 0.5,
        cls: Annotated[str, Form(alias="class", description="segmentation: the class")] = "",
        iou: Annotated[str, Form(description="detection: none, multiply or add")] = "none",
        region: Annotated[UploadFile | None, File(description="segmentation: mask")] = None,
        reference: Annotated[UploadFile | None, File(description="similarity: image")] = None,
    ) -> dict[str, Any]:
        lazy = await source(image)
        mask = None if region is None else await read_upload(region, config.max_upload_bytes)
        refs = None
        if reference is not None:
            refs = [(upload_name(reference), await read_upload(reference, config.max_upload_bytes))]
        call = TaskCall(model, (methods,), layer, task, parse_box(box), threshold, cls, iou)
        return await run_work(lambda: tasks.explain(call, lazy, mask, refs))

    @app.post("/api/segment-classes", summary="The classes a segmentation model sees, by pixels")
    async def segment_classes(
        image: Annotated[UploadFile, File(description="the image file")],
        model: Annotated[str, Form(description="a name from GET /api/models")] = "",
    ) -> dict[str, Any]:
        lazy = await source(image)
        return await run_work(lambda: tasks.segment_classes(model, lazy))

    @app.post("/api/concepts", summary="Deep Feature Factorization: concepts and top classes")
    async def concepts(
        image: Annotated[UploadFile, File(description="the image file")],
        model: Annotated[str, Form(description="a name from GET /api/models")] = "",
        layer: Annotated[str, Form(description="auto or a layer name")] = "auto",
        num_concepts: Annotated[int, Form(description="how many concepts")] = 5,
    ) -> dict[str, Any]:
        lazy = await source(image)
        return await run_work(lambda: tasks.concepts(model, lazy, layer, num_concepts))

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
model waits for that model's lock (:mod:`.pool`). An explain request whose client goes away
stops at its next check (:func:`..web.until_disconnected`); one that would add more model passes
than ``max_passes`` is refused (:mod:`.catalogue`). ``POST /api/fetch`` runs in a pool of its own
(``fetch_workers`` threads) within ``url_deadline`` seconds, its wait for a slot included, so
slow URLs never hold the threads that explain. Errors camscope raises on purpose become JSON
``{"detail": message}`` answers with their status (:func:`..web.base_app`); anything else is
logged with its traceback and answered 500. The server goes on serving after every bad request.

Example:
    >>> from camscope.serve.viewer.app import ServeConfig, create_app  # doctest: +SKIP
    >>> app = create_app(ServeConfig(models=["efficientnet_lite0"]))  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from ...core.cost import DEFAULT_PASS_BUDGET
from ...data.inputs import DEMO_IMAGES
from ...errors import ImageLoadError, UsageError
from ...io import DEFAULT_MAX_PIXELS, load_image
from ...io.download import DownloadDeadline
from ...models.default import DEFAULT_MODEL
from ...outputs import camscope_version, encoded
from ...tasks import TaskRequest
from ...viz import DEFAULT_COLORMAP, RECOMMENDED_COLORMAPS, to_display_rgb
from ..limits import ServerBusy, URLFetchDisabled
from ..web import base_app, read_upload, run_work, until_disconnected, upload_name
from .catalogue import colormap_luts, method_catalogue
from .encode import DISPLAY_SIDE
from .pool import ModelPool
from .service import INPUT_BYTES, MAP_BYTES, MAX_TOPK, Explainer, ExplainRequest, LazyImage
from .tasks import TaskService, parse_box

__version__ = camscope_version()


@dataclass
class ServeConfig:
    """Everything ``camscope serve`` decides at start; see ``camscope serve --help``."""

    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    device: str = "cpu"
    allow_url: bool = True
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    url_deadline: float = 10.0  # seconds for a whole /api/fetch, its wait for a slot included
    fetch_workers: int = 4  # URLs fetched at once, in a pool of their own
    input_entries: int = 32
    map_entries: int = 128
    input_bytes: int = INPUT_BYTES
    map_bytes: int = MAP_BYTES
    max_passes: int | None = DEFAULT_PASS_BUDGET  # model passes per image one request may add


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


# The parameters the routes share. FastAPI reads the routes' annotations in this module's
# globals: no name local to create_app may appear in them.
Model = Annotated[str, Form(description="a name from GET /api/models (default: the first)")]
ModelQuery = Annotated[str, Query(description="model name (default: the first)")]
Methods = Annotated[str, Form(description="comma-separated names from GET /api/methods")]
Layer = Annotated[
    str,
    Form(description="auto, first, middle, last, conv:N, a layer name, or a comma list (fused)"),
]
JobForm = Annotated[str, Form(description="the job id sent with the request")]
Threshold = Annotated[float, Form(description="detection: least score of a box")]
ClassForm = Annotated[str, Form(alias="class", description="the class (detection: only its boxes)")]


async def uploaded_image(
    http: Request,
    image: Annotated[UploadFile, File(description="the image file (JPEG, PNG, WebP, TIFF, ...)")],
) -> LazyImage:
    """The upload, checked against the server's cap; decoded only when a route needs it."""
    config: ServeConfig = http.app.state.config
    data = await read_upload(image, config.max_upload_bytes)
    name = upload_name(image)  # hashing a large upload would stall every request on the loop
    return await run_work(lambda: LazyImage.from_bytes(data, name, config.max_pixels))


async def explain_request(
    http: Request,
    model: Model = "",
    methods: Methods = "gradcam",
    layer: Layer = "auto",
    target: Annotated[
        str, Form(description=f"a class index, a class name, top1, or topk:K (K <= {MAX_TOPK})")
    ] = "top1",
    colormap: Annotated[
        str, Form(description=f"for overlay_png: {', '.join(RECOMMENDED_COLORMAPS)}, ...")
    ] = DEFAULT_COLORMAP,
    overlays: Annotated[
        bool,
        Form(
            description="true: also draw and encode overlay_png on the server (about 20 ms "
            "more per map; the page colours the float16 map itself)"
        ),
    ] = False,
) -> ExplainRequest:
    """The choices of ``POST /api/explain``, checked before the upload is read."""
    explainer: Explainer = http.app.state.explainer
    return explainer.check(ExplainRequest(model, (methods,), layer, target, colormap, overlays))


ImageUpload = Annotated[LazyImage, Depends(uploaded_image)]


def create_app(config: ServeConfig | None = None, *, pool: ModelPool | None = None) -> FastAPI:
    """The viewer's application. ``pool`` replaces the one ``config`` describes (tests pass
    models already in memory)."""
    config = config or ServeConfig()
    pool = pool or ModelPool(config.models, device=config.device)
    explainer = Explainer(
        pool,
        input_entries=config.input_entries,
        map_entries=config.map_entries,
        input_bytes=config.input_bytes,
        map_bytes=config.map_bytes,
        max_passes=config.max_passes,
    )
    app = base_app(
        "camscope viewer", config.max_upload_bytes, "index.html", explainer.jobs, __doc__ or ""
    )
    app.state.explainer = explainer
    app.state.config = config
    tasks = TaskService(explainer)
    fetch_pool = anyio.CapacityLimiter(max(1, config.fetch_workers))
    demo_cache: dict[str, bytes] = {}
    demo_lock = threading.Lock()
    luts = colormap_luts()

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
            "max_passes": explainer.max_passes,
            "max_topk": MAX_TOPK,
        }

    @app.get("/api/methods", summary="Every registered CAM method with its cost")
    async def methods(
        model: Annotated[
            str, Query(description="with layer: add each method's passes on this model")
        ] = "",
        layer: Annotated[str, Query(description="auto, first, middle, last, a layer name")] = "",
    ) -> list[dict[str, Any]]:
        rows = method_catalogue()
        if not model and not layer:
            return rows
        counts = await run_work(lambda: explainer.passes(model, layer or "auto"))
        budget = explainer.max_passes
        return [
            {
                **row,
                "passes": counts[row["name"]],
                "over_budget": budget is not None and counts[row["name"]] > budget,
            }
            for row in rows
        ]

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
    async def layers(model: ModelQuery = "") -> dict[str, Any]:
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
    async def classes(model: ModelQuery = "") -> dict[str, Any]:
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
                    from ...data.inputs import demo_images

                    demo_cache.update(
                        {n: encoded(img, compress_level=1) for n, img in demo_images()}
                    )
                return demo_cache[name]

        return Response(await run_work(load), media_type="image/png")

    @app.post(
        "/api/fetch",
        summary="Fetch an image URL on the server (off with --no-url); PNG",
        responses={503: {"description": "every fetch slot stayed busy for the deadline"}},
    )
    async def fetch(url: Annotated[str, Form(description="http(s) URL of an image")]) -> Response:
        if not config.allow_url:
            raise URLFetchDisabled(
                "fetching URLs is off on this server (--no-url); upload the file"
            )
        if not url.lower().startswith(("http://", "https://")):
            raise UsageError(f"{url[:200]!r} is not an http(s) URL")
        deadline = config.url_deadline
        busy = (
            f"the server is fetching {config.fetch_workers} other URL(s) and none finished within "
            f"{deadline:g} s; try again shortly, or download the image and upload it"
        )
        began = time.monotonic()

        def load() -> bytes:
            left = deadline - (time.monotonic() - began)  # the wait for a slot counts
            if left <= 0.05:
                raise ServerBusy(busy)
            try:
                image = load_image(
                    url,
                    max_pixels=config.max_pixels,
                    timeout=left,
                    deadline=left,
                    max_bytes=config.max_upload_bytes,
                )
            except DownloadDeadline as err:
                raise ImageLoadError(
                    url[:200],
                    f"the download did not finish within {deadline:g} s, this server's limit "
                    "for image URLs; download the image yourself and upload the file",
                ) from err
            return encoded(image, compress_level=1)

        with anyio.move_on_after(deadline) as waiting:  # a queue's wait, not a download's
            data = await run_work(load, fetch_pool)
        if waiting.cancelled_caught:
            raise ServerBusy(busy)
        return Response(data, media_type="image/png")

    @app.post("/api/preview", summary="Decode an upload and return a display copy as PNG")
    async def preview(image: ImageUpload) -> Response:
        def load() -> bytes:
            return encoded(to_display_rgb(image.load(), DISPLAY_SIDE), compress_level=1)

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
            400: {
                "description": "bad image, method, layer, target or colour map, or over the "
                "pass budget (--max-passes)"
            },
            409: {"description": "cancelled (POST /api/cancel)"},
            413: {"description": "upload over the cap (--max-upload-mb)"},
            503: {"description": "the server is shutting down"},
        },
    )
    async def explain(
        http: Request,
        request: Annotated[ExplainRequest, Depends(explain_request)],
        image: ImageUpload,
        job: Annotated[
            str, Form(description="an id of your choice to read progress and cancel")
        ] = "",
    ) -> JSONResponse:
        work = explainer.jobs.start(job) if job else explainer.jobs.private()
        outcome = await until_disconnected(
            http, work, lambda: explainer.explain(request, image, work)
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
    async def cancel(job: JobForm) -> dict[str, Any]:
        return explainer.jobs.cancel(job).as_dict()

    @app.post("/api/detect", summary="The boxes a detector finds (image pixels)")
    async def detect(
        image: ImageUpload, model: Model = "", threshold: Threshold = 0.5, cls: ClassForm = ""
    ) -> dict[str, Any]:
        return await run_work(lambda: tasks.detect(model, image, threshold, cls))

    @app.post(
        "/api/explain-task",
        summary="Maps of a box, a drawn box, a class in a painted region, or the similarity to "
        "a reference image",
    )
    async def explain_task(
        image: ImageUpload,
        model: Model = "",
        methods: Methods = "gradcam",
        layer: Layer = "auto",
        task: Annotated[
            str, Form(description="auto, detection, segmentation, similarity")
        ] = "auto",
        box: Annotated[str, Form(description="x0,y0,x1,y1 in image pixels (detection)")] = "",
        threshold: Threshold = 0.5,
        cls: ClassForm = "",
        iou: Annotated[str, Form(description="detection: none, multiply or add")] = "none",
        region: Annotated[UploadFile | None, File(description="segmentation: mask")] = None,
        reference: Annotated[UploadFile | None, File(description="similarity: image")] = None,
    ) -> dict[str, Any]:
        mask = None if region is None else await read_upload(region, config.max_upload_bytes)
        refs = None
        if reference is not None:
            refs = [(upload_name(reference), await read_upload(reference, config.max_upload_bytes))]
        boxes = parse_box(box)
        request = TaskRequest(task, threshold, (boxes,) if boxes else (), cls or None, iou=iou)
        return await run_work(
            lambda: tasks.explain(model, methods, layer, request, image, mask, refs)
        )

    @app.post("/api/segment-classes", summary="The classes a segmentation model sees, by pixels")
    async def segment_classes(image: ImageUpload, model: Model = "") -> dict[str, Any]:
        return await run_work(lambda: tasks.segment_classes(model, image))

    @app.post("/api/concepts", summary="Deep Feature Factorization: concepts and top classes")
    async def concepts(
        image: ImageUpload,
        model: Model = "",
        layer: Layer = "auto",
        num_concepts: Annotated[int, Form(description="how many concepts")] = 5,
    ) -> dict[str, Any]:
        return await run_work(lambda: tasks.concepts(model, image, layer, num_concepts))

    return app

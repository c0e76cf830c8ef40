"""The REST API through FastAPI's test client: answers, errors, limits, prefix, concurrency."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import re
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from nets import SmallNet, hook_counts
from PIL import Image

from camscope import explain, list_methods
from camscope.data.inputs import demo_images
from camscope.errors import ModelLoadError
from camscope.io import preprocess
from camscope.models import ModelSpec
from camscope.serve.viewer.app import ServeConfig, create_app
from camscope.serve.viewer.encode import map_from_base64
from camscope.serve.viewer.jobs import Job
from camscope.serve.viewer.pool import ModelPool
from camscope.serve.web import STATIC

KEYS = {"model", "layer", "probability_kind", "targets", "top5", "maps", "seconds"}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(lite0) -> TestClient:
    pool = ModelPool.of_loaded({"efficientnet_lite0": lite0})
    return TestClient(create_app(ServeConfig(allow_url=False), pool=pool))


def post(client: TestClient, data: bytes, name: str = "chelsea.png", **fields: str):
    return client.post("/api/explain", files={"image": (name, data, "image/png")}, data=fields)


def test_explain_answers_the_documented_json(client, lite0, demo_pngs) -> None:
    model, spec = lite0
    default = post(client, demo_pngs["coffee"])  # no overlay unless asked (issue 23)
    assert default.status_code == 200 and default.json()["maps"]["gradcam"]["overlay_png"] == ""
    reply = post(
        client, demo_pngs["chelsea"], methods="gradcam,gradcam++,guided-gradcam", overlays="true"
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == KEYS
    assert body["model"] == "efficientnet_lite0" and body["layer"] == "bn2"
    assert body["probability_kind"] == "softmax"
    assert body["targets"][0]["index"] == 285 and body["targets"][0]["label"] == "Egyptian cat"
    assert [t["index"] for t in body["top5"]][:1] == [285] and len(body["top5"]) == 5
    assert set(body["seconds"]) >= {"decode", "gradcam", "gradcam++", "guided-gradcam", "total"}
    image = demo_images()[0][1]
    x = preprocess(image, spec)
    ref = explain(model, x, ["gradcam", "gradcam++", "guided-gradcam"], targets=285)
    assert body["targets"][0]["probability"] == pytest.approx(float(ref.probabilities[0]), abs=1e-5)
    for method, entry in body["maps"].items():
        assert set(entry) == {"overlay_png", "map", "shape"} and entry["shape"] == [224, 224]
        got = map_from_base64(entry["map"], entry["shape"])
        np.testing.assert_allclose(got, ref.maps[method][0].numpy(), atol=5e-4, rtol=0)
        overlay = Image.open(io.BytesIO(base64.b64decode(entry["overlay_png"])))
        assert overlay.size == image.size and overlay.mode == "RGB"
    assert reply.headers["X-Camscope-Computed"] == "gradcam,gradcam++,guided-gradcam"
    again = post(client, demo_pngs["chelsea"], methods="gradcam,layercam", overlays="false")
    assert again.headers["X-Camscope-Reused"] == "gradcam"
    assert again.headers["X-Camscope-Computed"] == "layercam"
    assert again.json()["maps"]["gradcam"]["overlay_png"] == ""


def test_catalogue_routes(client) -> None:
    methods = client.get("/api/methods").json()
    assert [m["name"] for m in methods] == list_methods()
    assert {m["cost"] for m in methods} == {"one pass", "guided pass", "few passes", "perturbation"}
    assert next(m for m in methods if m["name"] == "scorecam")["passes_text"] == "C + 1 at most"
    costed = client.get("/api/methods", params={"model": "efficientnet_lite0", "layer": "auto"})
    rows = {m["name"]: m for m in costed.json()}
    assert rows["gradcam"]["passes"] == 0 and rows["scorecam"]["passes"] == 1281  # bn2: 1280
    assert rows["sscam"]["passes"] == 35 * 1280 + 1 and rows["sscam"]["over_budget"]
    assert not rows["scorecam"]["over_budget"]
    assert client.get("/api/config").json()["max_passes"] == 2000
    models = client.get("/api/models").json()
    assert models[0]["name"] == "efficientnet_lite0" and models[0]["default"]
    layers = client.get("/api/layers", params={"model": "efficientnet_lite0"}).json()["layers"]
    marks = {m: row["name"] for row in layers for m in row["marks"]}
    assert marks == {
        "first": "conv_stem",
        "middle": "blocks.4.0.conv_pw",
        "last": "conv_head",
        "auto": "bn2",
    }
    assert next(r for r in layers if r["name"] == "bn2")["shape"] == [1280, 7, 7]
    assert client.get("/api/classes").json()["classes"][285] == "Egyptian cat"
    luts = client.get("/api/colormaps").json()
    assert luts["default"] == "inferno" and len(luts["colormaps"]["inferno"]) == 768
    assert client.get("/healthz").json()["status"] == "ok"
    assert "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    form = schema["paths"]["/api/explain"]["post"]["requestBody"]["content"]
    fields = next(iter(form.values()))["schema"]
    ref = fields.get("$ref", "").rsplit("/", 1)[-1]
    props = schema["components"]["schemas"][ref]["properties"] if ref else fields["properties"]
    assert {"image", "model", "methods", "layer", "target", "colormap"} <= set(props)
    demo = client.get("/api/demo/chelsea")
    assert demo.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(demo.content)).size == (451, 300)


def test_bad_requests_are_answered_and_the_server_goes_on(client, demo_pngs) -> None:
    cases = [
        (post(client, b"this is text, not a JPEG", name="photo.jpg"), 400, "not an image"),
        (post(client, b"", name="empty.png"), 400, "empty"),
        (post(client, demo_pngs["chelsea"][:2000]), 400, "truncated"),
        (post(client, demo_pngs["chelsea"], methods="gradcm"), 400, "unknown method"),
        (post(client, demo_pngs["chelsea"], model="/etc/passwd"), 400, "unknown model"),
        (post(client, demo_pngs["chelsea"], target="tabbby"), 400, "closest names: 'tabby'"),
        (post(client, demo_pngs["chelsea"], target="1000"), 400, "out of range"),
        (post(client, demo_pngs["chelsea"], target="topk:1000"), 400, "at most 20"),
        (post(client, demo_pngs["chelsea"], layer="nope"), 400, "nope"),
        (post(client, demo_pngs["chelsea"], colormap="nope"), 400, "colormap"),
        (post(client, demo_pngs["chelsea"], job="../x"), 400, "job ids"),
        (client.get("/api/demo/passwd"), 400, "unknown demo"),
        (client.post("/api/fetch", data={"url": "http://127.0.0.1/x.png"}), 403, "--no-url"),
    ]
    for reply, status, text in cases:
        assert reply.status_code == status, reply.text
        assert text in reply.json()["detail"]
    assert post(client, demo_pngs["coffee"]).status_code == 200
    named = post(client, demo_pngs["chelsea"], target="tabby")  # a class name, as the CLI takes
    assert named.status_code == 200 and named.json()["targets"][0]["index"] == 281


def test_a_model_that_cannot_load_is_answered_503_and_the_server_goes_on(lite0) -> None:
    """The server's fault, not the request's: 503 (the error handler's one default besides 400)."""

    def loader(name: str):
        if name == "broken":
            raise ModelLoadError("run folder 'broken': cannot read config.json")
        return lite0

    pool = ModelPool(["efficientnet_lite0", "broken"], loader=loader)
    client = TestClient(create_app(ServeConfig(allow_url=False), pool=pool))
    reply = client.get("/api/classes", params={"model": "broken"})
    assert reply.status_code == 503 and "cannot read config.json" in reply.json()["detail"]
    assert client.get("/api/classes").status_code == 200


def test_upload_and_pixel_caps(lite0, demo_pngs) -> None:
    pool = ModelPool.of_loaded({"efficientnet_lite0": lite0})
    cap = 50_000
    client = TestClient(
        create_app(ServeConfig(max_upload_bytes=cap, max_pixels=100_000), pool=pool)
    )
    big = demo_pngs["astronaut"]  # over the cap, within the multipart envelope: read, then refused
    assert cap < len(big) < cap + (1 << 20)
    too_big = post(client, big)
    assert too_big.status_code == 413 and "--max-upload-mb" in too_big.json()["detail"]
    huge = bytes(3 << 20)  # over the cap plus the envelope: refused from its Content-Length
    declared = post(client, huge)
    assert declared.status_code == 413 and "--max-upload-mb" in declared.json()["detail"]
    boundary = b"----camscope"
    head = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    )

    def streamed():  # no Content-Length: counted while it arrives
        yield head
        for start in range(0, len(huge), 1 << 16):
            yield huge[start : start + (1 << 16)]
        yield b"\r\n--" + boundary + b"--\r\n"

    reply = client.post(
        "/api/explain",
        content=streamed(),
        headers={"content-type": "multipart/form-data; boundary=----camscope"},
    )
    assert reply.status_code == 413
    pixels = post(client, png(Image.new("RGB", (400, 300))))  # 120,000 > 100,000 pixels
    assert pixels.status_code == 400 and "--max-pixels" in pixels.json()["detail"]
    assert post(client, png(Image.new("RGB", (200, 150), "white"))).status_code == 200


def test_image_urls_are_fetched_with_the_caps(lite0, demo_pngs) -> None:
    """POST /api/fetch reads a URL through camscope.io.load_image (a local server here)."""
    files = {"/cat.png": demo_pngs["chelsea"], "/notes.txt": b"not an image"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    pool = ModelPool.of_loaded({"efficientnet_lite0": lite0})
    try:
        client = TestClient(create_app(ServeConfig(), pool=pool))
        reply = client.post("/api/fetch", data={"url": f"{base}/cat.png"})
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
        fetched = np.asarray(Image.open(io.BytesIO(reply.content)))
        assert np.array_equal(fetched, np.asarray(demo_images()[0][1]))
        for url, text in (
            (f"{base}/notes.txt", "not an image"),
            (f"{base}/missing.png", "HTTP 404"),
            ("file:///etc/passwd", "not an http(s) URL"),
        ):
            bad = client.post("/api/fetch", data={"url": url})
            assert bad.status_code == 400 and text in bad.json()["detail"]
        capped = TestClient(create_app(ServeConfig(max_upload_bytes=10_000), pool=pool))
        big = capped.post("/api/fetch", data={"url": f"{base}/cat.png"})
        assert big.status_code == 400 and "limit of 10000 bytes" in big.json()["detail"]
    finally:
        server.shutdown()


def test_works_behind_a_path_prefix(lite0) -> None:
    """The page uses relative URLs only, and every route answers under a mount prefix."""
    for name in ("index.html", "viewer.js", "render.js", "study.html", "study.js"):
        text = (STATIC / name).read_text(encoding="utf-8")
        assert not re.search(r"""["'`(]/(api|static|docs)\b""", text), name
    parent = FastAPI()
    pool = ModelPool.of_loaded({"efficientnet_lite0": lite0})
    parent.mount("/tools/cam", create_app(ServeConfig(), pool=pool))
    client = TestClient(parent)
    page = client.get("/tools/cam/")
    assert page.status_code == 200 and 'src="static/viewer.js"' in page.text
    assert client.get("/tools/cam/static/viewer.js").status_code == 200
    assert client.get("/tools/cam/api/methods").status_code == 200
    assert "/tools/cam/openapi.json" in client.get("/tools/cam/docs").text


class Probe(torch.nn.Module):
    """Counts how many forward passes run at the same time (the per-model lock keeps it at 1)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.005)
            return self.inner(x)
        finally:
            with self.guard:
                self.active -= 1


async def _gather(app, requests):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(
            *[
                client.post("/api/explain", files={"image": ("a.png", data)}, data=fields)
                for data, fields in requests
            ]
        )


def test_sixteen_parallel_requests_equal_sequential_ones(lite0, demo_pngs) -> None:
    model, _ = lite0
    torch.manual_seed(0)
    probe = Probe(SmallNet(classes=5).eval())
    small = ModelSpec("probe", input_size=(32, 32), class_names=list("abcde"))
    pool = ModelPool.of_loaded({"efficientnet_lite0": lite0, "probe": (probe, small)})
    config = ServeConfig(input_entries=0, map_entries=0)  # no reuse: every request computes
    app = create_app(config, pool=pool)
    plans = [
        ("gradcam,guided-gradcam", "top1", "auto"),
        ("gradcam++,layercam", "281", "auto"),
        ("xgradcam,eigencam", "top1", "conv_head"),
        ("hirescam,gradcam", "topk:2", "blocks.4.0.conv_pw"),
    ]
    requests = [
        (demo_pngs[name], {"methods": m, "target": t, "layer": layer, "overlays": "false"})
        for name in ("chelsea", "coffee", "rocket", "astronaut")
        for m, t, layer in plans
    ]
    requests += [(demo_pngs["coffee"], {"model": "probe", "methods": "gradcam"})] * 8
    parallel = asyncio.run(_gather(app, requests))
    assert probe.peak == 1  # never two passes through one model at once
    sequential = [post(TestClient(app), data, **fields) for data, fields in requests]
    for a, b in zip(parallel, sequential):
        assert a.status_code == b.status_code == 200, a.text
        ja, jb = a.json(), b.json()
        assert ja["targets"] == jb["targets"] and ja["layer"] == jb["layer"]
        assert {k: v["map"] for k, v in ja["maps"].items()} == {
            k: v["map"] for k, v in jb["maps"].items()
        }
    assert hook_counts(model) == {} and hook_counts(probe) == {}
    assert not model.training


class Wide(torch.nn.Module):
    """64 channels at the explained layer: Score-CAM's masked passes come in several batches."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def test_progress_and_cancel_over_http(demo_pngs, monkeypatch) -> None:
    """A cancel sent over HTTP stops a running Score-CAM part-way, whatever the machine's load.

    Once the job has reported passes done, its progress callback (the server's own, which also
    checks the cancel flag) waits until the test has sent its cancel. The test used to hold the
    model's forward instead, but Score-CAM's masked passes run on a folded, traced copy of the
    model (camscope.perturbation.fastpath) that never calls it: the run could finish before the
    cancel arrived on a loaded machine and answer 200.
    """
    cancel_sent = threading.Event()
    original = Job.progress

    def held(self: Job, method: str):
        report = original(self, method)

        def wrapped(done: int, total: int) -> None:
            report(done, total)  # records the progress and raises once cancelled
            if done > 0:
                cancel_sent.wait(timeout=120)

        return wrapped

    monkeypatch.setattr(Job, "progress", held)
    model = Wide().eval()
    spec = ModelSpec("wide", input_size=(32, 32), class_names=list("abcd"))
    app = create_app(ServeConfig(), pool=ModelPool.of_loaded({"wide": (model, spec)}))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            fields = {"methods": "scorecam", "job": "job-1"}
            running = asyncio.create_task(
                client.post(
                    "/api/explain", files={"image": ("a.png", demo_pngs["rocket"])}, data=fields
                )
            )
            seen = {}
            deadline = time.monotonic() + 120  # generous: the machine may be busy
            while time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                seen = (await client.get("/api/progress", params={"job": "job-1"})).json()
                if seen["done"] > 0:
                    break
            await client.post("/api/cancel", data={"job": "job-1"})
            cancel_sent.set()
            reply = await running
            after = (await client.get("/api/progress", params={"job": "job-1"})).json()
            return seen, reply, after

    try:
        seen, reply, after = asyncio.run(scenario())
    finally:
        cancel_sent.set()
    assert seen["state"] == "running" and seen["method"] == "scorecam" and seen["total"] >= 64
    assert reply.status_code == 409 and "cancelled" in reply.json()["detail"]
    assert after["state"] == "cancelled" and 0 < after["done"] < after["total"]
    assert hook_counts(model) == {}


def test_an_upload_is_hashed_off_the_event_loop(client, demo_pngs, monkeypatch) -> None:
    """A 20 MB upload takes tens of milliseconds to hash: on the loop, every request would wait."""
    import asyncio
    import hashlib

    from camscope.serve.viewer import service

    on_loop: list[bool] = []
    real = hashlib.sha256

    def sha256(data: bytes):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(data)

    monkeypatch.setattr(service.hashlib, "sha256", sha256)
    assert client.post("/api/preview", files={"image": ("c.png", demo_pngs["coffee"])}).is_success
    assert on_loop == [False]

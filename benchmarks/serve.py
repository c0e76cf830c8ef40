"""What the web viewer's HTTP layer costs: upload to first map, and requests/s under load.

Run by hand (not a test)::

    .venv/bin/python benchmarks/serve.py                  # 30 rounds, 8 clients x 12 requests
    .venv/bin/python benchmarks/serve.py --rounds 10 --clients 4

It starts ``camscope serve --port 0`` as a separate process (uvicorn, the default model on CPU) and
measures, interleaved round by round on the same photo (scikit-image's chelsea, 451 x 300, PNG):

* **library**: in this process, ``load_image_bytes`` + ``preprocess`` + ``explain(model, x,
  "gradcam")``: what a script does with the same file (decode included, as the server decodes);
* **upload to first map**: ``POST /api/explain`` with the file, ``methods=gradcam``, from the start
  of the upload until the JSON is parsed and the map decoded to a numpy array; with
  ``overlays=false`` (what the page sends: it colours maps itself), with no ``overlays`` field (the
  API's default: no overlay since issue 23, the overlay PNG before) and with ``overlays=true`` (the
  overlay PNG drawn and encoded on the server). Each round changes one pixel of the photo, so no
  request is served from the cache.

Target: upload to first map <= 1.2 x library + 50 ms (on the medians).

Then **throughput**: 8 client threads send Grad-CAM requests at once (``overlays=false``), each on
its own variant of the photo (no reuse), and the same with one shared photo (every request after the
first is answered from the cache); requests/s against the library's sequential rate in this
process. The server runs one request at a time through a model (its lock), so requests/s cannot
exceed the library's rate; the figure says how much of it the HTTP layer keeps.

This process calls ``camscope.allocator.tune_allocator()`` like the ``camscope`` command does in
the server, so both sides run with the same malloc settings.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

import camscope
from camscope.allocator import tune_allocator
from camscope.data.inputs import demo_images
from camscope.io import load_image_bytes, preprocess

SRC = Path(__file__).resolve().parents[1] / "src"


def photo_bytes(base: np.ndarray, variant: int) -> bytes:
    """The photo as PNG with one pixel set from ``variant`` (a distinct upload per variant)."""
    array = base.copy()
    array[0, 0] = (variant % 256, (variant // 256) % 256, 7)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def start_server(threads: int | None) -> tuple[subprocess.Popen[str], str]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "camscope", "serve", "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"http://\S+/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, match.group(0)


def post(client: httpx.Client, url: str, data: bytes, overlays: bool | None) -> np.ndarray:
    """One Grad-CAM request; ``overlays=None`` sends no ``overlays`` field (the API's default)."""
    fields = {"methods": "gradcam"}
    if overlays is not None:
        fields["overlays"] = "true" if overlays else "false"
    reply = client.post(
        url + "api/explain", files={"image": ("chelsea.png", data, "image/png")}, data=fields
    )
    reply.raise_for_status()
    entry = reply.json()["maps"]["gradcam"]
    return np.frombuffer(base64.b64decode(entry["map"]), dtype="<f2").reshape(entry["shape"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=12)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads in both processes (default: torch's own choice; 1 on a busy machine, "
        "where a descheduled OpenMP thread stalls every pass)",
    )
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = np.asarray(demo_images()[0][1])
    model, spec = camscope.load_model()
    proc, url = start_server(args.threads)
    print(
        f"server {url}; torch {torch.__version__}, {torch.get_num_threads()} threads here; {platform.processor() or platform.machine()}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    try:
        with httpx.Client(timeout=120) as client:
            times: dict[str, list[float]] = {"library": [], "bare": [], "default": [], "full": []}
            for i in range(args.warmup + args.rounds):
                data = photo_bytes(base, 3 * i)
                began = time.perf_counter()
                x = preprocess(load_image_bytes(data, "chelsea.png"), spec)
                camscope.explain(model, x, "gradcam").maps["gradcam"][0].numpy()
                took = {"library": time.perf_counter() - began}
                for k, (case, overlays) in enumerate(
                    (("bare", False), ("default", None), ("full", True))
                ):
                    upload = photo_bytes(base, 3 * i + k) if k else data
                    began = time.perf_counter()
                    post(client, url, upload, overlays=overlays)
                    took[case] = time.perf_counter() - began
                if i >= args.warmup:
                    for case, seconds in took.items():
                        times[case].append(seconds)
            med = {k: statistics.median(v) for k, v in times.items()}

            # throughput: clients x per_client requests at once
            def burst(shared: bool, offset: int) -> float:
                """Requests/s of all clients at once; the uploads are encoded beforehand."""
                bodies = [
                    [
                        photo_bytes(base, 0 if shared else offset + c * args.per_client + k)
                        for k in range(args.per_client)
                    ]
                    for c in range(args.clients)
                ]
                start = threading.Barrier(args.clients + 1)

                def client_run(c: int) -> None:
                    with httpx.Client(timeout=300) as mine:
                        start.wait()
                        for body in bodies[c]:
                            post(mine, url, body, overlays=False)

                with ThreadPoolExecutor(args.clients) as pool:
                    futures = [pool.submit(client_run, c) for c in range(args.clients)]
                    start.wait()
                    began = time.perf_counter()
                    for future in futures:
                        future.result()
                return args.clients * args.per_client / (time.perf_counter() - began)

            distinct = burst(False, 100_000)
            shared = burst(True, 0)
            n = args.clients * args.per_client
            uploads = [photo_bytes(base, 200_000 + k) for k in range(n)]
            began = time.perf_counter()
            for data in uploads:
                x = preprocess(load_image_bytes(data, "c.png"), spec)
                camscope.explain(model, x, "gradcam")
            library_rate = n / (time.perf_counter() - began)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    target = 1.2 * med["library"] + 0.050
    rows = [
        ("library: decode + preprocess + explain", med["library"], "1.00x", ""),
        (
            "upload to first map, overlays=false (the page)",
            med["bare"],
            f"{med['bare'] / med['library']:.2f}x",
            "yes" if med["bare"] <= target else "NO",
        ),
        (
            "upload to first map, the API's default (no overlays field)",
            med["default"],
            f"{med['default'] / med['library']:.2f}x",
            "yes" if med["default"] <= target else "NO",
        ),
        (
            "upload to first map, overlays=true (the overlay PNG)",
            med["full"],
            f"{med['full'] / med['library']:.2f}x",
            "yes" if med["full"] <= target else "NO",
        ),
    ]
    print(
        f"\nmedians of {args.rounds} interleaved rounds; target <= 1.2 x library + 50 ms = {1000 * target:.1f} ms\n"
    )
    print("| case | median ms | x library | within target |")
    print("|---|---|---|---|")
    for name, seconds, ratio, ok in rows:
        print(f"| {name} | {1000 * seconds:.1f} | {ratio} | {ok} |")
    print(f"\n{args.clients} concurrent clients x {args.per_client} Grad-CAM requests each:\n")
    print("| case | requests/s | x library rate |")
    print("|---|---|---|")
    print(f"| library, sequential in one process | {library_rate:.1f} | 1.00x |")
    print(
        f"| server, every request a new image | {distinct:.1f} | {distinct / library_rate:.2f}x |"
    )
    print(f"| server, one shared image (reused) | {shared:.1f} | {shared / library_rate:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Data-set scale: images/s of camscope's streaming job against plain inference and a peer loop.

Run by hand (not a test), one run, one table::

    .venv/bin/python benchmarks/dataset.py                         # 2,000 images, CPU
    .venv/bin/python benchmarks/dataset.py --images 200 --cases a,b   # a quick look
    .venv/bin/python benchmarks/dataset.py --markdown              # the table for docs/scale.md

It generates (once, reused) a folder of ``--images`` JPEG and PNG files of mixed sizes (crops of
scikit-image's photos, 96 to 800 px a side) and explains all of them with Grad-CAM, top-1 class, at
the model's automatic layer, in batches of ``--batch-size``:

* (a) ``plain``: the same pipeline (DataLoader workers decoding with ``camscope.io``, batches of the
  same size) feeding ``model(x)`` under ``torch.inference_mode()`` and a top-5: the reference;
* (b) ``camscope local``: ``run_dataset_job(backend="local")``, Parquet shards and commits included;
* (c) ``camscope ray N``: the same job with ``backend="ray"`` on a local Ray instance, N actors;
* (d) ``pytorch-grad-cam``: a per-batch loop as its README shows it: PIL ``Image.open`` +
  torchvision transforms in the main process, ``GradCAM(model, [layer])(x, targets=None)``; the
  maps are computed and dropped (no file writing: in its favour).

The process raises glibc's malloc thresholds first, as the ``camscope`` command does (the Ray
actors do the same for themselves), for every case alike. Threads, as the CLI sets them: the model
gets ``cores - decode workers`` torch threads (``--threads``), one decoding worker runs beside it
(``--decode-workers``); a Ray actor gets ``threads / actors`` (at least 1) and Ray ``cores + 1``
logical CPUs so that its decoding task runs beside the actors; (d) runs twice, with that thread
count and with every core, and the table keeps its faster run (on a busy machine OpenMP passes
whose threads share cores with other work wait at every barrier, so fewer threads can be faster).
Times are wall-clock over the whole run, model loading excluded for
(a), (b), (d) (loaded once before), Ray's actor start-up included (``ray.init`` excluded).
Memory: RSS of this process at the start, middle and end of each case, and the proportional set
size (PSS) of this process and all its children (loader workers, Ray workers) at the middle.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = ("a", "b", "c", "d")


@dataclass
class Memory:
    """RSS (MiB) of this process at three moments, and the whole tree's PSS at the middle."""

    rss: list[float] = field(default_factory=list)
    tree_pss: float | None = None
    load: list[float] = field(default_factory=list)  # 1-minute load average at start and end
    _marks: set[str] = field(default_factory=set)

    def sample(self, mark: str, tree: bool = False) -> None:
        if mark in self._marks:
            return
        self._marks.add(mark)
        self.rss.append(_proc_kib(os.getpid(), "status", "VmRSS:") / 1024)
        if mark in ("start", "end"):
            self.load.append(os.getloadavg()[0])
        if tree:
            pids = _descendants(os.getpid())
            self.tree_pss = sum(_proc_kib(p, "smaps_rollup", "Pss:") for p in pids) / 1024

    def progress(self, done: int, total: int) -> None:
        if done >= total // 2:
            self.sample("middle", tree=True)


def _proc_kib(pid: int, name: str, key: str) -> float:
    """A kB figure from /proc (Linux; 0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    """This process and every process below it (loader workers, the raylet and its workers)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                stack.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


@dataclass
class Row:
    case: str
    images: int
    seconds: float
    memory: Memory

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` crops of scikit-image's photos, 96..800 px a side, JPEG (2/3) and PNG (1/3)."""
    from PIL import Image
    from skimage import data

    photos = [
        np.asarray(getattr(data, name)())
        for name in ("chelsea", "coffee", "rocket", "astronaut", "cat", "hubble_deep_field")
    ]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, -1)
        h, w = photo.shape[:2]
        ch, cw = int(rng.integers(h // 3, h + 1)), int(rng.integers(w // 3, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out_w, out_h = (int(v) for v in rng.integers(96, 801, size=2))
        image = Image.fromarray(photo[y : y + ch, x : x + cw, :3]).resize((out_w, out_h))
        sub = folder / f"part{i % 10}"
        sub.mkdir(exist_ok=True)
        if i % 3 == 2:
            image.save(sub / f"img{i:05d}.png")
        else:
            image.save(sub / f"img{i:05d}.jpg", quality=90)


def plain(model: Any, spec: Any, folder: Path, batch: int, workers: int, threads: int) -> Row:
    """(a) the same loader and batches, forward + top-5 only."""
    from camscope import io
    from camscope.batch.decode import DecodeSettings, collate
    from camscope.data.lists import list_images
    from camscope.data.walk import Walk

    memory = Memory()
    memory.sample("start")
    inputs = list_images(folder)
    settings = DecodeSettings(spec, io.DEFAULT_MAX_PIXELS)
    loader = Walk(inputs.items, settings, batch_size=batch, workers=workers, collate=collate)
    began, done = time.perf_counter(), 0
    torch.set_num_threads(threads)
    with torch.inference_mode():
        for decoded in loader:
            ok = [i for i, e in enumerate(decoded.errors) if e is None]
            model(decoded.x[ok]).softmax(1).topk(5)
            done += len(decoded)
            memory.progress(done, len(inputs))
    seconds = time.perf_counter() - began
    memory.sample("end")
    return Row("(a) plain inference, same pipeline", len(inputs), seconds, memory)


def camscope_job(
    loaded: tuple[Any, Any] | None,
    model_name: str,
    folder: Path,
    batch: int,
    workers: int,
    backend: str,
    threads: int,
    actors: int = 1,
) -> Row:
    """(b) and (c): the data-set job into a fresh temporary folder."""
    from camscope.batch import DatasetJob, ModelRecipe, RayOptions, run_dataset_job

    memory = Memory()
    memory.sample("start")
    out = Path(tempfile.mkdtemp(prefix="camscope-bench-"))
    job = DatasetJob(
        folder,
        out,
        model=ModelRecipe(model_name, device="cpu"),
        methods=("gradcam",),
        batch_size=batch,
        decode_workers=workers,
        torch_threads=threads,
        backend=backend,
        ray=RayOptions(num_workers=actors, cpus_per_worker=max(1, threads // actors)),
    )
    began = time.perf_counter()
    result = run_dataset_job(job, progress=memory.progress, loaded=loaded)
    seconds = time.perf_counter() - began
    memory.sample("end")
    shutil.rmtree(out)
    counts = result.summary["counts"]
    assert counts["explained"] == counts["inputs"], counts
    name = (
        "(b) camscope, local backend"
        if backend == "local"
        else f"(c) camscope, Ray, {actors} actor(s)"
    )
    return Row(name, counts["inputs"], seconds, memory)


def peer_loop(model: Any, spec: Any, layer: Any, folder: Path, batch: int, threads: int) -> Row:
    """(d) pytorch-grad-cam in a per-batch loop with PIL loading in the main process."""
    from PIL import Image
    from pytorch_grad_cam import GradCAM
    from torchvision import transforms

    memory = Memory()
    memory.sample("start")
    from camscope.data.lists import list_images

    paths = [sample.source for sample in list_images(folder).items]
    transform = transforms.Compose(
        [
            transforms.Resize(tuple(spec.input_size)),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    torch.set_num_threads(threads)
    began = time.perf_counter()
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            x = torch.stack([transform(Image.open(p).convert("RGB")) for p in chunk])
            cam(input_tensor=x, targets=None)
            memory.progress(start + len(chunk), len(paths))
    seconds = time.perf_counter() - began
    memory.sample("end")
    case = f"(d) pytorch-grad-cam, per-batch loop, PIL, {threads} thread(s)"
    return Row(case, len(paths), seconds, memory)


def table(rows: list[Row], markdown: bool) -> str:
    """One table; (d) appears once, at its better thread count (the other is on stderr)."""
    peers = [r for r in rows if r.case.startswith("(d)")]
    if len(peers) > 1:
        best = max(peers, key=lambda r: r.rate)
        rows = [r for r in rows if not r.case.startswith("(d)") or r is best]
    ref = next((r for r in rows if r.case.startswith("(a)")), None)
    local = next((r for r in rows if r.case.startswith("(b)")), None)
    header = [
        "case",
        "images/s",
        "vs (a)",
        "(b) vs it",
        "RSS MiB start / middle / end",
        "tree PSS MiB",
        "load start / end",
    ]
    lines = []
    for r in rows:
        lines.append(
            [
                r.case,
                f"{r.rate:.1f}",
                f"{r.rate / ref.rate:.2f}x" if ref else "-",
                f"{local.rate / r.rate:.2f}x" if local else "-",
                " / ".join(f"{v:.0f}" for v in r.memory.rss),
                f"{r.memory.tree_pss:.0f}" if r.memory.tree_pss else "-",
                " / ".join(f"{v:.1f}" for v in r.memory.load),
            ]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*line) for line in lines)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--folder", type=Path, default=ROOT / "out" / "bench-dataset")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-workers", type=int, default=1)
    parser.add_argument("--cases", default="a,b,c,d", help="comma list of a, b, c, d")
    parser.add_argument("--ray-actors", default="1,2")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the model (default: cores minus decode workers, as the CLI)",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))
    sys.path.insert(0, str(ROOT / "src"))
    from camscope import load_model
    from camscope.allocator import tune_allocator

    tune_allocator()  # as the camscope command does; for every case alike (Ray actors do it too)
    from camscope.core.layers import resolve_layers

    cores = os.cpu_count() or 2
    threads = args.threads or max(1, cores - args.decode_workers)
    folder = args.folder / f"images-{args.images}"
    if not folder.is_dir() or len(list(folder.rglob("img*"))) != args.images:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {args.images} images in {folder} ...", file=sys.stderr)
        make_images(folder, args.images)
    model, spec = load_model(args.model)
    ((layer_name, layer),) = resolve_layers(model, "auto", torch.zeros(1, 3, *spec.input_size))
    print(
        f"# {args.images} images, {args.model} at {layer_name}, Grad-CAM top-1, batch "
        f"{args.batch_size}, {threads} torch thread(s) for the model, "
        f"{args.decode_workers} decode worker(s); {platform.processor() or platform.machine()}, "
        f"{cores} cores, torch {torch.__version__}, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        file=sys.stderr,
    )
    batch, workers = args.batch_size, args.decode_workers
    runs: list[tuple[str, Callable[[], Row]]] = []
    if "a" in cases:
        runs.append(("a", lambda: plain(model, spec, folder, batch, workers, threads)))
    if "b" in cases:
        job = (model, spec), args.model, folder, batch, workers
        runs.append(("b", lambda: camscope_job(*job, "local", threads)))
    if "c" in cases:
        for actors in (int(v) for v in args.ray_actors.split(",")):
            job = (model, spec), args.model, folder, batch, workers
            runs.append(("c", lambda job=job, n=actors: camscope_job(*job, "ray", threads, n)))
    if "d" in cases:
        # The peer's best: with all cores, and with as many threads as the others use.
        for n in sorted({threads, cores}):
            runs.append(("d", lambda n=n: peer_loop(model, spec, layer, folder, batch, n)))
    rows: list[Row] = []
    ray_started = False
    for case, run in runs:
        if case == "c" and not ray_started:
            import ray

            # Ray lowers its workers' priority (nice +15) to keep its own daemons responsive; on
            # a machine shared with other jobs that alone would slow the actors against (b).
            os.environ.setdefault("RAY_worker_niceness", "0")
            # Ray's workers import camscope from this source tree, as this process does
            # (sys.path does not reach them; the environment of the local instance does).
            paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)

            ray.init(
                num_cpus=cores + 1,  # the decoding task runs beside actors that use every core
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
            ray_started = True
        row = run()
        print(
            f"{row.case}: {row.rate:.1f} images/s ({row.seconds:.1f} s, load "
            f"{' -> '.join(f'{v:.1f}' for v in row.memory.load)})",
            file=sys.stderr,
        )
        rows.append(row)
    if ray_started:
        import ray

        ray.shutdown()
    print(table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

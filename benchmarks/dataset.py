"""Data-set scale: images/s of camscope's streaming job against plain inference and a peer loop.

Run by hand (not a test), one run, one table per situation::

    python benchmarks/dataset.py                                  # 600 images, CPU, quiet + busy
    python benchmarks/dataset.py --images 200 --cases p,b          # a quick look
    python benchmarks/dataset.py --cases p,b,e,f --situations quiet --markdown   # bf16, compile
    python benchmarks/dataset.py --markdown --images 20000 --device cuda          # on a GPU

It generates (once, reused) a folder of ``--images`` JPEG and PNG files of mixed sizes (crops of
scikit-image's photos, 96 to 800 px a side) and explains all of them with Grad-CAM, top-1 class, at
the model's automatic layer:

* (p) ``plain loop``: what a user writes: ``camscope.io.load_image`` + ``preprocess`` in the main
  process, ``torch.cat`` and ``model(x)`` under ``torch.no_grad()`` with every core's torch threads,
  at batch 16 and at batch 32 (on a busy machine also at batch 16 with one thread): **the
  reference**, its better batch size;
* (a) ``plain, same pipeline``: the job's decoding pipeline (DataLoader workers, ``--batch-size``)
  feeding ``model(x)`` under ``torch.inference_mode()`` and a top-5;
* (b) ``camscope local, defaults``: ``run_dataset_job(backend="local")`` with nothing set, so its
  threads, decode workers and batch size are measured on its first batches
  (:mod:`camscope.batch.tuning`; what it decided is printed), Parquet shards and commits included;
* (c) ``camscope ray N``: the same job with ``backend="ray"`` on a local Ray instance, N actors;
* (d) ``pytorch-grad-cam``: a per-batch loop as its README shows it: PIL ``Image.open`` +
  torchvision transforms in the main process, ``GradCAM(model, [layer])(x, targets=None)`` at batch
  ``--batch-size`` (32) with every core's threads; the maps are computed and dropped (no file
  writing: in its favour);
* (e) ``camscope, precision bf16`` and (f) ``camscope, compile``: (b) with ``precision="bf16"`` or
  ``compile=True`` (the compile's seconds included; its rate after the compile is printed too); a
  second table compares their maps with (b)'s: top-1 agreement, and the Pearson r of the raw maps
  where both explained the same class.

Every case runs ``--rounds`` times (3), the cases of a round back to back, so that outside load
hits them alike; the table gives each case's median and best rate and the median over the rounds
of its ratio to the better plain loop **of the same round** (the peer runs ``--peer-rounds``
times, 1: it is slow and far behind).

Situations (``--situations``): ``quiet`` (the machine as it is: the CPU time other processes
used during each case is measured from /proc and printed, in cores, beside the load average,
which counts this run's own threads too; a table where other processes used more than a quarter
of a core says the machine was not quiet), ``busy`` (a busy-loop subprocess holds one core
during every case: what a job meets beside another job). ``--startup`` also times
the process start: ``python -m camscope explain`` on 16 images against ``import torch`` and
loading the model in a fresh process (the medians of three runs).

The process raises glibc's malloc thresholds first, as the ``camscope`` command does (the Ray
actors do the same for themselves), for every case alike. Times are wall-clock over the whole run,
model loading excluded (loaded once before; Ray's actor start-up included, ``ray.init``
excluded). Memory: RSS of this process at the start, middle and end of each case, and the
proportional set size (PSS) of this process and all its children (loader workers, Ray workers) at
the middle.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
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
FOLDER = ROOT / "out" / "bench-dataset"  # the generated images, one folder per count
CASES = ("a", "b", "c", "d")


@dataclass
class Memory:
    """RSS (MiB) of this process at three moments, and the whole tree's PSS at the middle."""

    rss: list[float] = field(default_factory=list)
    tree_pss: float | None = None
    load: list[float] = field(default_factory=list)  # 1-minute load average at start and end
    others: float | None = None  # cores other processes used during the case (Linux)
    _marks: set[str] = field(default_factory=set)
    _cpu: tuple[float, float, float] | None = None

    def sample(self, mark: str, tree: bool = False) -> None:
        if mark in self._marks:
            return
        self._marks.add(mark)
        self.rss.append(_proc_kib(os.getpid(), "status", "VmRSS:") / 1024)
        if mark in ("start", "end"):
            self.load.append(os.getloadavg()[0])
            cpu = _cpu_seconds()
            if mark == "start":
                self._cpu = cpu
            elif self._cpu is not None and cpu is not None:
                wall = cpu[0] - self._cpu[0]
                busy, ours = cpu[1] - self._cpu[1], cpu[2] - self._cpu[2]
                self.others = max(0.0, (busy - ours) / wall) if wall > 0 else None
        if tree:
            pids = _descendants(os.getpid())
            self.tree_pss = sum(_proc_kib(p, "smaps_rollup", "Pss:") for p in pids) / 1024

    def progress(self, done: int, total: int) -> None:
        if done >= total // 2:
            self.sample("middle", tree=True)


HOLDERS: set[int] = set()  # the busy-loop processes: other processes, though our children


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(now, CPU seconds every process used, CPU seconds of this process and its children but
    the HOLDERS), from /proc (Linux; None elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / tick
        ours = 0.0
        for pid in _descendants(os.getpid()):
            if pid in HOLDERS:
                continue
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ours += sum(int(v) for v in stat[11:15]) / tick  # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return None
    return time.monotonic(), busy, ours


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
    note: str = ""
    out: Path | None = None  # a camscope job's output folder (kept for the map comparison)
    summary: dict[str, Any] | None = None

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


def image_folder(root: Path, count: int) -> Path:
    """``root/images-<count>``: ``count`` images of :func:`make_images`, made once and reused."""
    folder = root / f"images-{count}"
    if not folder.is_dir() or len(list(folder.rglob("img*"))) != count:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {count} images in {folder} ...", file=sys.stderr)
        make_images(folder, count)
    return folder


def load(model_name: str, device: str) -> tuple[Any, Any, str, Any]:
    """The model on ``device``, its spec, and the name and module of its automatic layer."""
    from camscope import load_model
    from camscope.core.layers import resolve_layers

    model, spec = load_model(model_name)
    model = model.to(device)
    example = torch.zeros(1, 3, *spec.input_size, device=device)
    ((layer_name, layer),) = resolve_layers(model, "auto", example)
    return model, spec, layer_name, layer


def plain(
    model: Any, spec: Any, folder: Path, batch: int, workers: int, threads: int, device: str
) -> Row:
    """(a) the job's loader and batches, forward + top-5 only."""
    from camscope import io
    from camscope.batch.decode import DecodeSettings, collate
    from camscope.data.lists import list_images
    from camscope.data.walk import Walk

    memory = Memory()
    memory.sample("start")
    inputs = list_images(folder)
    settings = DecodeSettings(spec, io.DEFAULT_MAX_PIXELS)
    loader = Walk(inputs.items, settings, batch_size=batch, workers=workers, collate=collate)
    torch.set_num_threads(threads)
    began, done = time.perf_counter(), 0
    with torch.inference_mode():
        for decoded in loader:
            ok = [i for i, e in enumerate(decoded.errors) if e is None]
            model(decoded.x[ok].to(device)).softmax(1).topk(5)[1].cpu()
            done += len(decoded)
            memory.progress(done, len(inputs))
    seconds = time.perf_counter() - began
    memory.sample("end")
    return Row(f"(a) plain, same pipeline, batch {batch}", len(inputs), seconds, memory)


def user_loop(model: Any, spec: Any, folder: Path, batch: int, threads: int, device: str) -> Row:
    """(p) the loop a user writes: decode in the main process, one forward per batch."""
    from camscope import io
    from camscope.data.lists import list_images

    memory = Memory()
    memory.sample("start")
    paths = [sample.source for sample in list_images(folder).items]
    torch.set_num_threads(threads)
    began = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            x = torch.cat([io.preprocess(io.load_image(p), spec) for p in chunk])
            model(x.to(device)).argmax(1).tolist()
            memory.progress(start + len(chunk), len(paths))
    seconds = time.perf_counter() - began
    memory.sample("end")
    case = f"(p) plain loop, batch {batch}, {threads} thread(s)"
    return Row(case, len(paths), seconds, memory)


def camscope_job(
    loaded: tuple[Any, Any] | None,
    model_name: str,
    folder: Path,
    device: str,
    backend: str = "local",
    *,
    label: str = "(b) camscope local, defaults",
    actors: int = 1,
    ray_threads: int = 1,
    **options: Any,
) -> Row:
    """(b), (c), (e), (f): the data-set job into a fresh temporary folder (kept in ``Row.out``)."""
    from camscope.batch import DatasetJob, ModelRecipe, RayOptions, run_dataset_job

    memory = Memory()
    memory.sample("start")
    out = Path(tempfile.mkdtemp(prefix="camscope-bench-"))
    job = DatasetJob(
        folder,
        out,
        model=ModelRecipe(model_name, device=device),
        methods=("gradcam",),
        backend=backend,
        ray=RayOptions(num_workers=actors, cpus_per_worker=max(1, ray_threads // actors)),
        **options,
    )
    threads = torch.get_num_threads()
    began = time.perf_counter()
    result = run_dataset_job(job, progress=memory.progress, loaded=loaded)
    seconds = time.perf_counter() - began
    torch.set_num_threads(threads)
    memory.sample("end")
    counts, run = result.summary["counts"], result.summary["this_run"]
    assert counts["explained"] == counts["inputs"], counts
    note = ""
    if backend == "local":
        layout = "channels-last" if run["tuning"]["decided"].get("channels_last") else "default"
        note = (
            f"batch {run['batch_size']}, {run['decode_workers']} decode worker(s), "
            f"{run['torch_threads']} thread(s), {layout} layout"
        )
        switches = run["tuning"]["thread_switches"]
        if switches:
            note += ", switched to " + ", ".join(str(s["threads"]) for s in switches)
        compiled = run["tuning"].get("compile")
        if compiled:
            steady = counts["inputs"] / max(1e-9, seconds - compiled["seconds"])
            note += f"; compile {compiled['seconds']:.0f} s, then {steady:.1f} images/s"
    return Row(label, counts["inputs"], seconds, memory, note, out, result.summary)


def peer_loop(
    model: Any, spec: Any, layer: Any, folder: Path, batch: int, threads: int, device: str
) -> Row:
    """(d) pytorch-grad-cam in a per-batch loop with PIL loading in the main process."""
    from PIL import Image
    from pytorch_grad_cam import GradCAM
    from torchvision import transforms

    from camscope.data.lists import list_images

    memory = Memory()
    memory.sample("start")
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
            cam(input_tensor=x.to(device), targets=None)
            memory.progress(start + len(chunk), len(paths))
    seconds = time.perf_counter() - began
    memory.sample("end")
    case = f"(d) pytorch-grad-cam, batch {batch}, {threads} thread(s)"
    return Row(case, len(paths), seconds, memory)


def agreement(reference: Path, other: Path) -> dict[str, float]:
    """Top-1 agreement of two jobs' rows, and the Pearson r of their raw maps where both
    explained the same class (the float16 maps times their scale)."""
    from camscope.batch import open_maps

    def read(folder: Path) -> dict[tuple[str, str], tuple[int, np.ndarray]]:
        table = open_maps(folder).table(["id", "method", "target", "map", "map_scale"])
        rows = {}
        for id_, method, target, values, scale in zip(*(c.to_pylist() for c in table.columns)):
            rows[(id_, method)] = (target, np.asarray(values, np.float64) * scale)
        return rows

    a, b = read(reference), read(other)
    keys = sorted(set(a) & set(b))
    same = [k for k in keys if a[k][0] == b[k][0]]
    rs = []
    for key in same:
        x, y = a[key][1] - a[key][1].mean(), b[key][1] - b[key][1].mean()
        denominator = np.linalg.norm(x) * np.linalg.norm(y)
        rs.append(float(x @ y / denominator) if denominator > 0 else 1.0)
    values = np.asarray(rs) if rs else np.asarray([np.nan])
    return {
        "rows": len(keys),
        "top1": len(same) / max(1, len(keys)),
        "r_median": float(np.median(values)),
        "r_min": float(values.min()),
        "r_at_least_0999": float((values >= 0.999).mean()),
    }


def startup(folder: Path, model_name: str, repeats: int = 3) -> list[tuple[str, float]]:
    """Fresh-process wall times: ``import torch``, loading the model, and the whole
    ``camscope explain --format parquet`` run on the first 16 images of ``folder`` (with the
    seconds before and after its loop: the process start a small job pays)."""
    import json

    small = Path(tempfile.mkdtemp(prefix="camscope-start-"))
    for i, path in enumerate(sorted(folder.rglob("img*"))[:16]):
        shutil.copy(path, small / f"{i:02d}{path.suffix}")
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    commands = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        f"load_model('{model_name}') in a fresh process": [
            sys.executable,
            "-c",
            f"from camscope import load_model; load_model({model_name!r})",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cli, outside = [], []
    for _ in range(repeats):
        for name, command in commands.items():
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - began)
        out = small / "out"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "camscope", "explain", str(small), "--format", "parquet"]
        began = time.perf_counter()
        subprocess.run([*command, "--out", str(out)], env=env, check=True, capture_output=True)
        wall = time.perf_counter() - began
        loop = json.loads((out / "summary.json").read_text())["this_run"]["seconds"]
        cli.append(wall)
        outside.append(wall - loop)
    shutil.rmtree(small)
    rows = [(name, statistics.median(v)) for name, v in times.items()]
    rows.append(
        ("camscope explain --format parquet, 16 images, whole process", statistics.median(cli))
    )
    rows.append(
        ("  of which outside the job's loop (start-up, summary)", statistics.median(outside))
    )
    return rows


def busy_core() -> subprocess.Popen[bytes]:
    """A process that holds one core (a busy loop) until it is stopped."""
    holder = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    HOLDERS.add(holder.pid)
    return holder


def _is_reference(row: Row) -> bool:
    return row.case.startswith("(p)") and ", 1 thread" not in row.case


def table(rounds: list[list[Row]], markdown: bool) -> str:
    """One line per case: its median and best rate over the rounds, and the median over the
    rounds of its ratio to the better plain loop of the same round (cases that ran back to back,
    under the same outside load) and to the peer's run."""
    cases: dict[str, list[Row]] = {}
    for round_ in rounds:
        for row in round_:
            cases.setdefault(row.case, []).append(row)

    def ratios(case: str, reference: Callable[[list[Row]], Row | None]) -> list[float]:
        out = []
        for round_ in rounds:
            ref = reference(round_)
            mine = next((r for r in round_ if r.case == case), None)
            if ref is not None and mine is not None:
                out.append(mine.rate / ref.rate)
        return out

    def best_plain(round_: list[Row]) -> Row | None:
        plain = [r for r in round_ if _is_reference(r)]
        return max(plain, key=lambda r: r.rate) if plain else None

    peer_runs = [r for rs in cases.values() for r in rs if r.case.startswith("(d)")]
    peer = max(peer_runs, key=lambda r: r.rate) if peer_runs else None
    header = [
        "case",
        "images/s, median (best)",
        "x better plain loop, same round (median)",
        "x peer",
        "decided / note",
        "load",
        "other processes, cores",
        "RSS MiB start / middle / end",
        "tree PSS MiB",
    ]
    lines = []
    for case, runs in cases.items():
        rates = [r.rate for r in runs]
        to_plain = ratios(case, best_plain)
        loads = [v for r in runs for v in r.memory.load]
        last = runs[-1]
        notes = sorted({r.note for r in runs if r.note})
        lines.append(
            [
                case,
                f"{statistics.median(rates):.1f} ({max(rates):.1f})",
                f"{statistics.median(to_plain):.2f}x" if to_plain else "-",
                f"{statistics.median(rates) / peer.rate:.2f}x" if peer else "-",
                "; ".join(notes),
                f"{min(loads):.1f}-{max(loads):.1f}",
                _span([r.memory.others for r in runs]),
                " / ".join(f"{v:.0f}" for v in last.memory.rss),
                f"{last.memory.tree_pss:.0f}" if last.memory.tree_pss else "-",
            ]
        )
    return _format(header, lines, markdown)


def _span(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{min(known):.2f}-{max(known):.2f}" if known else "-"


def _format(header: list[str], lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*line) for line in lines)])


def agreement_table(rounds: list[list[Row]], markdown: bool) -> str:
    """(e) and (f) against (b) of the same round: speed and maps."""
    header = ["case", "x (b), same round", "rows", "same top-1", "r median", "r min", "r >= 0.999"]
    lines = []
    for round_ in rounds:
        base = next((r for r in round_ if r.case.startswith("(b)")), None)
        for r in round_:
            if base is None or base.out is None or r.case[:3] not in ("(e)", "(f)") or not r.out:
                continue
            a = agreement(base.out, r.out)
            lines.append(
                [
                    r.case,
                    f"{r.rate / base.rate:.2f}x",
                    str(a["rows"]),
                    f"{100 * a['top1']:.1f}%",
                    f"{a['r_median']:.5f}",
                    f"{a['r_min']:.5f}",
                    f"{100 * a['r_at_least_0999']:.1f}%",
                ]
            )
    return _format(header, lines, markdown) if lines else ""


def run_situation(
    situation: str, cases: set[str], args: argparse.Namespace, model: Any, spec: Any, layer: Any
) -> list[list[Row]]:
    """``--rounds`` rounds of every case in ``cases``, in ``situation`` (``busy``: one core held
    throughout); the peer only in the first ``--peer-rounds``."""
    cores = os.cpu_count() or 2
    device, folder, name = args.device, args.folder / f"images-{args.images}", args.model
    batch = args.batch_size or 32
    loaded = (model, spec)
    fixed = {
        "batch_size": args.batch_size,
        "decode_workers": args.decode_workers,
        "torch_threads": args.threads,
    }
    runs: list[tuple[str, Callable[[], Row]]] = []
    if "p" in cases:
        for size in (16, 32):
            runs.append(("p", lambda n=size: user_loop(model, spec, folder, n, cores, device)))
        if situation == "busy":
            runs.append(("p", lambda: user_loop(model, spec, folder, 16, 1, device)))
    if "a" in cases:
        workers = 1 if args.decode_workers is None else args.decode_workers
        threads = args.threads or max(1, cores - workers)
        runs.append(("a", lambda: plain(model, spec, folder, batch, workers, threads, device)))
    if "b" in cases:
        runs.append(("b", lambda: camscope_job(loaded, name, folder, device, **fixed)))
    if "e" in cases and situation == "quiet":
        label = "(e) camscope, precision bf16" if device == "cpu" else "(e) camscope, fp16"
        options = {"label": label, "precision": "bf16" if device == "cpu" else "fp16", **fixed}
        runs.append(("e", lambda o=options: camscope_job(loaded, name, folder, device, **o)))
    if "f" in cases and situation == "quiet":
        options = {"label": "(f) camscope, compile", "compile": True, **fixed}
        runs.append(("f", lambda o=options: camscope_job(loaded, name, folder, device, **o)))
    if "c" in cases:
        threads = args.threads or cores
        for actors in (int(v) for v in args.ray_actors.split(",")):
            label = f"(c) camscope, Ray, {actors} actor(s)"
            options = {
                "label": label,
                "actors": actors,
                "ray_threads": threads,
                "batch_size": batch,
            }
            runs.append(
                ("c", lambda o=options: camscope_job(loaded, name, folder, device, "ray", **o))
            )
    if "d" in cases:
        runs.append(("d", lambda: peer_loop(model, spec, layer, folder, batch, cores, device)))
    holder = busy_core() if situation == "busy" else None
    rounds: list[list[Row]] = []
    try:
        for number in range(args.rounds):
            rows: list[Row] = []
            for key, run in runs:
                if key == "d" and number >= args.peer_rounds:
                    continue  # the peer is slow and far behind: fewer rounds
                row = run()
                print(
                    f"[{situation} {number + 1}] {row.case}: {row.rate:.1f} images/s "
                    f"({row.seconds:.1f} s, load "
                    f"{' -> '.join(f'{v:.1f}' for v in row.memory.load)}, other processes "
                    f"{_span([row.memory.others])} cores) {row.note}",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(row)
            rounds.append(rows)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--batch-size", type=int, default=None, help="for (b), (e), (f) (default: measured); "
        "(a), (c), (d) use it or 32"
    )  # fmt: skip
    parser.add_argument("--decode-workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cases", default="p,b,d", help="comma list of p, a, b, c, d, e, f")
    parser.add_argument("--situations", default="quiet,busy", help="quiet, busy or both")
    parser.add_argument("--ray-actors", default="1,2")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every case, interleaved")
    parser.add_argument("--peer-rounds", type=int, default=1, help="rounds of the slow peer (d)")
    parser.add_argument("--startup", action="store_true", help="also time the process start")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))
    sys.path.insert(0, str(ROOT / "src"))
    from camscope.allocator import tune_allocator

    tune_allocator()  # as the camscope command does; for every case alike (Ray actors do it too)
    folder = image_folder(args.folder, args.images)
    model, spec, layer_name, layer = load(args.model, args.device)
    print(
        f"# {args.images} images, {args.model} at {layer_name}, Grad-CAM top-1, {args.device}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {datetime.datetime.now():%Y-%m-%d %H:%M}, load average "
        f"{os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    if "c" in cases:
        _start_ray()
    threads = torch.get_num_threads()
    for situation in args.situations.split(","):
        rounds = run_situation(situation, cases, args, model, spec, layer)
        torch.set_num_threads(threads)
        loads = [v for rows in rounds for r in rows for v in r.memory.load]
        others = [r.memory.others for rows in rounds for r in rows]
        said = (
            f"## {situation}: load average {min(loads):.1f} to {max(loads):.1f} (this run's own "
            f"threads included); other processes used {_span(others)} cores during the cases"
        )
        if situation == "quiet" and max((v for v in others if v is not None), default=0) > 0.25:
            said += " (NOT a quiet machine: other processes ran; the ratios are indicative)"
        print(said)
        print(table(rounds, args.markdown))
        compared = agreement_table(rounds, args.markdown)
        if compared:
            print()
            print(compared)
        print()
        for rows in rounds:
            for row in rows:
                if row.out is not None:
                    shutil.rmtree(row.out, ignore_errors=True)
    if args.startup:
        lines = [[name, f"{seconds:.2f}"] for name, seconds in startup(folder, args.model)]
        print(f"## process start (load average {os.getloadavg()[0]:.1f})")
        print(_format(["fresh process", "seconds (median of 3)"], lines, args.markdown))
    if "c" in cases:
        import ray

        ray.shutdown()
    return 0


def _start_ray() -> None:
    import ray

    # Ray lowers its workers' priority (nice +15) to keep its own daemons responsive; on a
    # machine shared with other jobs that alone would slow the actors against (b).
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Ray's workers import camscope from this source tree, as this process does (sys.path does
    # not reach them; the environment of the local instance does).
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cores = os.cpu_count() or 2
    ray.init(
        num_cpus=cores + 1,  # the decoding task runs beside actors that use every core
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Every headline figure in one command: one-pass, Score-CAM, data-set and training, one table.

    make bench-gpu                                         # = the next line
    python benchmarks/run_all.py --device cuda --quick     # under 8 minutes on one GPU
    python benchmarks/run_all.py --device cpu --quick      # a few minutes on 2 CPU cores

It runs a short version of each benchmark on ``--device`` and writes one Markdown table, with the
machine named (GPU, driver, CUDA, torch, CPU, cores, load average), to ``--out`` (default
``benchmarks/results/<device>-<quick|full>.md``) and to stdout. The rows, each with what it is
measured against:

* **one-pass** (:mod:`one_pass`): ResNet-50 (random init) Grad-CAM images/s at batch 64 on a GPU
  (8 on a CPU) against the plain forward and pytorch-grad-cam, median of the rounds;
* **Score-CAM** (:mod:`perturbation`): seconds per image (one 224 px image, the first call, caches
  built inside it) of EfficientNet-Lite0 at ``blocks.6`` (and ResNet-50 at ``layer4`` on a GPU),
  against pytorch-grad-cam's Score-CAM;
* **data-set** (:mod:`dataset`): the data-set job at its defaults against the better of two plain
  loops (``load_image`` + ``preprocess`` + ``model(x)`` under ``no_grad``; batch 16 and 32 on a
  CPU, 32 and 64 on a GPU) and pytorch-grad-cam's loop, on generated images (200 on a CPU, 2,000 on
  a GPU);
* **training** (:mod:`training`): ``camscope.training.loop.train_epoch`` against a hand-written
  PyTorch loop on the same batches, images/s (median of paired rounds).

``--quick`` is the size above; without it every size is about three times larger. A section that
fails puts its error in the table (the traceback goes to stderr) and the command exits with 1;
sections that would start after ``--budget`` seconds are listed as not run. ``--smoke`` is a
tiny version for the test suite (``tests/test_run_all.py``): small models and sizes, no figure to
keep.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src")]
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam draws a bar per image

import torch  # noqa: E402


@dataclass
class Result:
    """One row of the table."""

    benchmark: str
    case: str
    value: float | None
    unit: str
    against: str = ""
    ratio: str = ""
    note: str = ""


@dataclass
class Scale:
    """Sizes of one run (``--quick``, full or ``--smoke``) on one device."""

    device: str
    one_pass_model: str = "resnet50"
    one_pass_batch: int = 64
    one_pass_size: int = 224
    rounds: int = 5
    scorecam_models: tuple[str, ...] = ("efficientnet_lite0",)
    dataset_images: int = 200
    dataset_batches: tuple[int, int] = (16, 32)
    training_images: int = 640
    training_rounds: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, device: str, quick: bool, smoke: bool) -> Scale:
        gpu = device == "cuda"
        if smoke:
            return cls(
                device, "resnet18", 2, 64, 1, ("resnet18",), 12, (4, 8), 64, 1, {"smoke": True}
            )
        scale = cls(
            device,
            one_pass_batch=64 if gpu else 8,
            rounds=5 if quick else 15,
            scorecam_models=("efficientnet_lite0", "resnet50") if gpu else ("efficientnet_lite0",),
            dataset_images=(2000 if gpu else 200) * (1 if quick else 3),
            dataset_batches=(32, 64) if gpu else (16, 32),
            training_images=640 * (1 if quick else 3),
            training_rounds=3 if quick else 5,
        )
        return scale


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# -- the sections ---------------------------------------------------------------------------


def one_pass_section(scale: Scale) -> list[Result]:
    """Grad-CAM images/s at the scale's batch against the plain forward and pytorch-grad-cam."""
    import torchvision
    from one_pass import measure
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import camscope
    from camscope.core.layers import auto_layer

    device = torch.device(scale.device)
    torch.manual_seed(0)
    model = getattr(torchvision.models, scale.one_pass_model)(weights=None).eval().to(device)
    x = torch.randn(
        scale.one_pass_batch, 3, scale.one_pass_size, scale.one_pass_size, device=device
    )
    layer = auto_layer(model, x)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    peer_model = copy.deepcopy(model)
    peer = GradCAM(peer_model, target_layers=[dict(peer_model.named_modules())[layer]])
    targets = [ClassifierOutputTarget(c) for c in classes]

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    cases: dict[str, Callable[[], object]] = {
        "forward": forward,
        "gradcam": lambda: camscope.explain(model, x, "gradcam", layer=layer, targets=classes),
        "pytorch-grad-cam": lambda: peer(x, targets=targets),
    }
    medians, _best, _peaks = measure(cases, device, 1, scale.rounds)
    n = scale.one_pass_batch
    name = f"{scale.one_pass_model} ({layer}), batch {n}, {scale.one_pass_size} px"
    rate = {case: n / (ms / 1e3) for case, ms in medians.items()}
    return [
        Result(
            "one-pass",
            f"Grad-CAM, {name}",
            rate["gradcam"],
            "images/s",
            "plain forward",
            f"{medians['gradcam'] / medians['forward']:.2f}x its time",
        ),
        Result("one-pass", f"plain forward, {name}", rate["forward"], "images/s"),
        Result(
            "one-pass",
            f"pytorch-grad-cam Grad-CAM, {name}",
            rate["pytorch-grad-cam"],
            "images/s",
            "camscope Grad-CAM",
            f"camscope {medians['pytorch-grad-cam'] / medians['gradcam']:.2f}x faster",
        ),
    ]


def scorecam_section(scale: Scale) -> list[Result]:
    """Score-CAM seconds per image (a first call) against pytorch-grad-cam's."""
    from functools import partial

    from perturbation import build, gradcam_lib, ours, pearson, timed

    results = []
    for name in scale.scorecam_models:
        if name == "resnet18":  # the smoke run's model
            import torchvision

            model, layer = torchvision.models.resnet18(weights=None).eval(), "layer4"
            model = model.to(scale.device)
        else:
            model, layer = build(name, scale.device)
        size = 64 if scale.extra.get("smoke") else 224
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(1, 3, size, size, generator=generator).to(scale.device)
        with torch.no_grad():
            cls = int(model(x).argmax(1))
        mine, cam = timed(
            partial(ours, model, x, layer, "scorecam", cls, score="channel-softmax"), scale.device
        )
        theirs, other = timed(partial(gradcam_lib, model, x, layer, "scorecam", cls), scale.device)
        if cam.shape[-2:] != other.shape[-2:]:  # the smoke run's 64 px maps; the peer's at 224
            cam = torch.nn.functional.interpolate(
                cam.reshape(1, 1, *cam.shape[-2:]).float(), size=other.shape[-2:], mode="bilinear"
            ).reshape(other.shape)
        results.append(
            Result(
                "Score-CAM",
                f"{name} at {layer}, 1 image, first call",
                mine,
                "s/image",
                f"pytorch-grad-cam {theirs:.2f} s",
                f"camscope {theirs / mine:.2f}x faster",
                f"r = {pearson(cam, other):.3f} with it (its masks use align_corners)",
            )
        )
    return results


def dataset_section(scale: Scale) -> list[Result]:
    """The data-set job at its defaults against the better plain loop and the peer's loop."""
    import dataset as bench

    name = "efficientnet_lite0"
    folder = bench.image_folder(bench.FOLDER, scale.dataset_images)
    model, spec, _layer_name, layer = bench.load(name, scale.device)
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads()
    try:
        loops = [
            bench.user_loop(model, spec, folder, b, cores, scale.device)
            for b in scale.dataset_batches
        ]
        torch.set_num_threads(threads)
        job = bench.camscope_job((model, spec), name, folder, scale.device)
        peer = bench.peer_loop(
            model, spec, layer, folder, scale.dataset_batches[-1], cores, scale.device
        )
    finally:
        torch.set_num_threads(threads)
    if job.out is not None:
        shutil.rmtree(job.out, ignore_errors=True)
    best = max(loops, key=lambda r: r.rate)
    n = scale.dataset_images
    return [
        Result(
            "data-set",
            f"camscope explain --format parquet at its defaults, {n} images, Grad-CAM",
            job.rate,
            "images/s",
            f"plain loop {best.rate:.1f} images/s ({best.case[4:]})",
            f"{job.rate / best.rate:.2f}x",
            f"decided: {job.note}",
        ),
        *(Result("data-set", r.case, r.rate, "images/s") for r in loops),
        Result(
            "data-set",
            f"pytorch-grad-cam loop, batch {scale.dataset_batches[-1]}",
            peer.rate,
            "images/s",
            "camscope job",
            f"camscope {job.rate / peer.rate:.2f}x faster",
        ),
    ]


def training_section(scale: Scale) -> list[Result]:
    """camscope's training epoch against a hand-written loop on the same batches."""
    from training import contest, hand_written_epoch

    from camscope.training.loop import train_epoch

    size, arch = 32, "gapnet-pooled"
    race = contest(
        arch, scale.training_images, size, 64, 0, scale.training_rounds + 1, scale.device
    )

    def hand() -> float:
        seen, seconds, _ = hand_written_epoch(
            race.hand_model, race.loader, race.hand_opt, race.mean, race.std
        )
        return seen / seconds

    def camscope_loop() -> float:
        stats = train_epoch(race.step, race.loader)
        _sync(scale.device)
        return stats.images / stats.seconds

    hand(), camscope_loop()  # warm-up
    pairs = []
    for r in range(scale.training_rounds):
        first = (camscope_loop, hand) if r % 2 == 0 else (hand, camscope_loop)
        rates = {fn.__name__: fn() for fn in first}
        pairs.append((rates["hand"], rates["camscope_loop"]))
    ratio = statistics.median(ours / theirs for theirs, ours in pairs)
    label = f"{arch}, {size} px, batch 64, {race.images} images"
    return [
        Result(
            "training",
            f"camscope train_epoch, {label}",
            statistics.median(p[1] for p in pairs),
            "images/s",
            "hand-written loop",
            f"{ratio:.3f}x (median of paired rounds)",
        ),
        Result(
            "training",
            f"hand-written loop, {label}",
            statistics.median(p[0] for p in pairs),
            "images/s",
        ),
    ]


SECTIONS: dict[str, Callable[[Scale], list[Result]]] = {
    "one-pass": one_pass_section,
    "scorecam": scorecam_section,
    "dataset": dataset_section,
    "training": training_section,
}


# -- the table --------------------------------------------------------------------------------


def machine(device: str) -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next(
            (line.split(":", 1)[1].strip() for line in text.splitlines() if "Model name" in line),
            cpu,
        )
    except OSError:
        pass
    facts = {
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs",
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
        "Python": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    if device == "cuda" and torch.cuda.is_available():
        facts["GPU"] = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        except OSError:
            driver = ""
        facts["driver"] = driver.splitlines()[0] if driver else "unknown (no nvidia-smi)"
    else:
        facts["GPU"] = "none (CPU run)"
    return facts


def write_table(results: list[Result], facts: dict[str, str], title: str) -> str:
    """The Markdown page: the machine, then one table of every row."""
    lines = [f"# {title}", ""]
    lines += [f"* **{key}**: {value}" for key, value in facts.items()]
    lines += [
        "",
        "| benchmark | case | value | unit | against | ratio | note |",
        "|---|---|---:|---|---|---|---|",
    ]
    for r in results:
        value = "-" if r.value is None else (f"{r.value:.3g}" if r.value < 10 else f"{r.value:.1f}")
        cells = [r.benchmark, r.case, value, r.unit, r.against, r.ratio, r.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the short version (see above)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma list of sections")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds; later sections skip")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch")
    from camscope.allocator import tune_allocator

    tune_allocator()  # as the camscope command does
    scale = Scale.make(args.device, args.quick, args.smoke)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    load = [os.getloadavg()[0]]
    began = time.perf_counter()
    results: list[Result] = []
    failed = False
    for name in args.only.split(","):
        section = SECTIONS[name]
        if time.perf_counter() - began > args.budget:
            results.append(Result(name, "not run: over the --budget", None, ""))
            continue
        t0 = time.perf_counter()
        print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
        try:
            results += section(scale)
        except Exception as err:  # one broken benchmark must not lose the others' rows
            traceback.print_exc()
            results.append(Result(name, f"FAILED: {type(err).__name__}: {err}", None, ""))
            failed = True
        print(f"[run_all] {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    facts = machine(args.device)
    facts["load average (1 min) at start / end"] = " / ".join(f"{v:.1f}" for v in load)
    facts["command"] = f"python benchmarks/run_all.py --device {args.device} --{mode}"
    facts["wall time"] = f"{time.perf_counter() - began:.0f} s"
    title = f"camscope benchmarks, {args.device}, {mode}"
    page = write_table(results, facts, title)
    out = args.out or HERE / "results" / f"{args.device}-{mode}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(page)
    print(f"[run_all] written to {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

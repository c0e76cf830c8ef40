"""Cost of camscope's one-pass engine against a plain forward and against the peers.

Run by hand (not a test)::

    .venv/bin/python benchmarks/one_pass.py                     # CPU (+ CUDA if available)
    .venv/bin/python benchmarks/one_pass.py --repeats 10 --batch-sizes 1 --markdown

For every (device, model, batch size) it times, on the same 224 px input, the same layer (camscope's
``"auto"`` choice, handed to the peers as a module) and the same target classes (the model's top-1):

* ``forward``          plain ``model(x)`` under ``torch.no_grad()``: the reference cost;
* ``gradcam``          ``camscope.explain(model, x, "gradcam")``;
* ``six methods``      one ``explain`` call for gradcam, gradcam++, xgradcam, layercam, hirescam,
  eigencam;
* ``gradcam top5``     ``explain(..., "gradcam", targets="top5")``: five maps per image;
* ``one-pass methods`` one ``explain`` call for every registered method that adds no pass beyond
  the shared forward and backward (``estimate_passes`` = 0, not guided; read from the registry,
  so new methods join by themselves);
* ``shapleycam``       ``explain(..., "shapleycam")``: the shared passes plus a graph-keeping
  backward and a Hessian-vector product;
* ``pytorch-grad-cam`` ``GradCAM(model, target_layers=[layer])(x, [ClassifierOutputTarget(c)])``;
* ``torchcam``         ``GradCAM(model, layer)``; ``extractor(class_idx, model(x))`` (returns
  layer-resolution maps: no upsampling, which is part of the other two's cost).

The peers are used as documented, each on its own copy of the model, their objects built once
outside the timed region. Cases are interleaved (one run of each per round) so that load from
other processes hits all of them alike; each figure is the median over ``--repeats`` rounds after
``--warmup`` rounds. Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA; on CPU no cheap
per-case figure exists (RSS only grows), so it is left out.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import logging
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

import camscope
from camscope.core.layers import auto_layer

SIX = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam"]
# case -> (target ratio vs forward, description); None: no ratio target.
TARGETS: dict[str, float | None] = {
    "forward": None,
    "gradcam": 1.10,
    "six methods": 1.25,
    "gradcam top5": 1.5,
    "one-pass methods": None,
    "shapleycam": None,
    "pytorch-grad-cam": None,
    "torchcam": None,
}
PEER_SPEEDUP_TARGET = {"pytorch-grad-cam": 2.5, "torchcam": 1.0}


@dataclass
class Row:
    device: str
    model: str
    batch: int
    case: str
    ms: float
    ratio: float
    peak_mib: float | None
    best_ratio: float  # best-of-N time over the best-of-N forward: the least noisy figure


def build_model(name: str) -> tuple[nn.Module, str]:
    """A random-init (or packaged-weights default) model in eval mode, and where it came from."""
    if name == "resnet50":
        return torchvision.models.resnet50(weights=None).eval(), "torchvision, random init"
    if name == "efficientnet_lite0":
        try:
            model, _spec = camscope.load_model("efficientnet_lite0")
            return model.eval(), "camscope.load_model (packaged weights)"
        except Exception as err:  # models.py not ready or weights unavailable: same architecture
            import timm

            print(
                f"# camscope.load_model failed ({err!r}); using timm random init", file=sys.stderr
            )
            model = timm.create_model("efficientnet_lite0", pretrained=False)
            return model.eval(), "timm, random init"
    raise SystemExit(f"unknown model {name!r}; choose resnet50 or efficientnet_lite0")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_cases(
    model: nn.Module, x: torch.Tensor, device: torch.device
) -> dict[str, Callable[[], object]]:
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TcGradCAM

    layer_name = auto_layer(model, x)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    one_pass = one_pass_methods(model, x, layer_name)

    pgc_model = copy.deepcopy(model)
    pgc_cam = PgcGradCAM(pgc_model, target_layers=[dict(pgc_model.named_modules())[layer_name]])
    pgc_targets = [ClassifierOutputTarget(c) for c in classes]

    tc_model = copy.deepcopy(model)
    tc_cam = TcGradCAM(tc_model, target_layer=layer_name)

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def torchcam_run() -> object:
        scores = tc_model(x)
        return tc_cam(class_idx=classes, scores=scores)

    cases: dict[str, Callable[[], object]] = {
        "forward": forward,
        "gradcam": lambda: camscope.explain(model, x, "gradcam", layer=layer_name, targets=classes),
        "six methods": lambda: camscope.explain(model, x, SIX, layer=layer_name, targets=classes),
        "gradcam top5": lambda: camscope.explain(
            model, x, "gradcam", layer=layer_name, targets="top5"
        ),
        "one-pass methods": lambda: camscope.explain(
            model, x, one_pass, layer=layer_name, targets=classes, strict=True
        ),
        "shapleycam": lambda: camscope.explain(
            model, x, "shapleycam", layer=layer_name, targets=classes, strict=True
        ),
        "pytorch-grad-cam": lambda: pgc_cam(x, targets=pgc_targets),
        "torchcam": torchcam_run,
    }
    print(f"# layer: {layer_name}, classes: {classes[:4]}{'...' if len(classes) > 4 else ''}")
    print(f"# one-pass methods ({len(one_pass)}): {', '.join(one_pass)}")
    return cases


def one_pass_methods(model: nn.Module, x: torch.Tensor, layer: str) -> list[str]:
    """Every registered method that adds no pass to the shared forward and backward here."""
    from camscope.methods import estimate_passes

    costs = estimate_passes(model, x[:1], camscope.list_methods(), layer)
    return [
        name
        for name, passes in costs.items()
        if passes == 0 and not camscope.get_method(name).needs_guided_gradients
    ]


def measure(
    cases: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, float], dict[str, float | None]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    peaks: dict[str, float | None] = {name: None for name in cases}
    for round_ in range(warmup + repeats):
        for name, fn in cases.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            sync(device)
            start = clock()
            result = fn()
            sync(device)
            elapsed = clock() - start
            del result
            if round_ >= warmup:
                times[name].append(elapsed * 1000)
                if device.type == "cuda":
                    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
                    peaks[name] = max(peaks[name] or 0.0, peak)
    medians = {name: statistics.median(v) for name, v in times.items()}
    return medians, {name: min(v) for name, v in times.items()}, peaks


def verdict(row: Row, rows: list[Row]) -> str:
    target = TARGETS.get(row.case)
    if target is not None:
        ok = row.ratio <= target
        return f"<= {target:.2f}x fwd: {'ok' if ok else 'MISSED'}"
    if row.case in PEER_SPEEDUP_TARGET:
        ours = next(
            r.ms
            for r in rows
            if (r.device, r.model, r.batch, r.case) == (row.device, row.model, row.batch, "gradcam")
        )
        speedup = row.ms / ours
        need = PEER_SPEEDUP_TARGET[row.case]
        ok = speedup >= need
        return f"camscope {speedup:.2f}x faster (want >= {need:.1f}x): {'ok' if ok else 'MISSED'}"
    return ""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import os

    return (
        f"{cpu}; {os.cpu_count()} logical CPUs visible; torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads); torchvision {torchvision.__version__}; "
        f"Python {platform.python_version()}; {datetime.date.today().isoformat()}"
    )


def print_table(rows: list[Row], markdown: bool) -> None:
    header = [
        "device",
        "model",
        "batch",
        "case",
        "median ms",
        "x forward",
        "x forward (best of N)",
        "peak MiB",
        "target (on the median)",
    ]
    body = [
        [
            r.device,
            r.model,
            str(r.batch),
            r.case,
            f"{r.ms:.1f}",
            f"{r.ratio:.2f}",
            f"{r.best_ratio:.2f}",
            "-" if r.peak_mib is None else f"{r.peak_mib:.0f}",
            verdict(r, rows),
        ]
        for r in rows
    ]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for line in body:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in body:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--models", default="resnet50,efficientnet_lite0")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when available)"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: time.perf_counter; cpu: time.process_time (CPU seconds of all threads of this "
        "process; steadier than wall time on a machine shared with other jobs, CPU device only)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    # the all-zero-map warnings of some methods (counterfactual, randomcam) would flood the output
    logging.getLogger("camscope").setLevel(logging.ERROR)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    print(f"# {machine()}")
    print(f"# torch.get_num_threads() = {torch.get_num_threads()} (left at its default)")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"# clock: {args.clock}, warmup {args.warmup}, median of {args.repeats}")

    rows: list[Row] = []
    for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
        base_model, source = build_model(model_name)
        print(f"# {model_name}: {source}")
        for dev_name in devices:
            device = torch.device(dev_name)
            model = copy.deepcopy(base_model).to(device)
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                torch.manual_seed(0)
                x = torch.randn(batch, 3, args.size, args.size, device=device)
                cases = make_cases(model, x, device)
                medians, bests, peaks = measure(cases, device, args.warmup, args.repeats, clock)
                for case, ms in medians.items():
                    rows.append(
                        Row(
                            dev_name,
                            model_name,
                            batch,
                            case,
                            ms,
                            ms / medians["forward"],
                            peaks[case],
                            bests[case] / bests["forward"],
                        )
                    )
                print(
                    f"# done {dev_name} {model_name} b={batch}: "
                    + ", ".join(f"{k} {v:.0f} ms" for k, v in medians.items()),
                    flush=True,
                )
    print()
    print_table(rows, args.markdown)


if __name__ == "__main__":
    main()

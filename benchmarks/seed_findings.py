"""Reproduce the seed papers' training findings with numbers (the tables of docs/training.md).

1. Seed 004: ``gapnet`` (no pooling: the CAM has the input's size) against ``gapnet-pooled`` (the
   same network and parameters with 2x2 max-pools between blocks), trained on the built-in set.
2. Seed 003: ResNet-18 on 32-px images with the ImageNet stem (a 1x1 last map) against the CIFAR
   stem (4x4), Grad-CAM at the last and the middle layers.

Each model is trained with ``camscope train`` and scored with ``camscope evaluate`` on
``builtin:N`` (the generator's evaluation stream, which training never sees: it draws from the
training stream), both run as
subprocesses under ``nice -n 10`` (do not nice this script itself), one at a time; a run that was
interrupted is resumed. Localization numbers come with 95% confidence
intervals over images, and the gapnet/pooled and stem comparisons also as paired differences on
the same images. Writes ``OUT/findings.json``, ``OUT/findings.md`` and side-by-side grids
(``OUT/*.png``; ``--figures DIR`` copies them, e.g. to docs/images).

    python benchmarks/seed_findings.py --out out/findings --figures docs/images   # both
    python benchmarks/seed_findings.py --only gapnet --epochs 12 --train-images 1200
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

CAMSCOPE = [sys.executable, "-m", "camscope"]


def run(args: list[str], log: Path) -> None:
    command = ["nice", "-n", "10", *CAMSCOPE, *args]
    print("$", " ".join(command[3:]).replace(sys.executable, "python"), flush=True)
    with log.open("a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1):
        raise SystemExit(f"command failed ({code}); see {log}")


def train(
    out: Path,
    name: str,
    extra: list[str],
    opts: argparse.Namespace,
    log: Path,
    images: int,
    epochs: int,
) -> Path:
    """Train ``name`` unless it is done; an interrupted or paused run is resumed."""
    run_dir = out / name
    base = ["train", "--out", str(run_dir), "--no-progress"]
    if (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary.get("status") != "paused":
            return run_dir
        run([*base, "--resume"], log)
    elif (run_dir / "config.json").exists():
        run([*base, "--resume"], log)
    else:
        base += ["--data", f"builtin:{images}", "--image-size", "32", "--epochs", str(epochs)]
        run([*base, "--seed", str(opts.seed), "--explain", "4", *extra], log)
    return run_dir


def evaluate(
    run_dir: Path,
    methods: str,
    layers: str | None,
    opts: argparse.Namespace,
    log: Path,
    name: str = "eval",
) -> dict[str, Any]:
    out = run_dir / name
    if not (out / "results.json").exists():
        args = ["evaluate", "--model", str(run_dir), "--data", f"builtin:{opts.eval_images}"]
        args += ["--methods", methods, "--metrics", "loc,pointing,energy", "--out", str(out)]
        # 15 px at 224 px, the pointing game's tolerance, is 2 px at 32 px
        args += ["--tolerance", "2", "--no-progress", "--examples", "0"]
        if layers:
            args += ["--layers", layers]
        run(args, log)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line]
    return {"summary": json.loads((out / "results.json").read_text()), "rows": rows}


def mean_ci(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, 1.96 * sd / math.sqrt(n)


def paired(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> tuple[float, float, int]:
    """Mean and 95% half-width of ``b - a`` over the images both scored."""
    left = {r["id"]: r[key] for r in a if r.get(key) is not None}
    diffs = [r[key] - left[r["id"]] for r in b if r.get(key) is not None and r["id"] in left]
    mean, half = mean_ci(diffs)
    return mean, half, len(diffs)


def fmt(mean: float, half: float, scale: float = 1.0, digits: int = 1) -> str:
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"


def select(
    rows: list[dict[str, Any]], method: str, layer: str | None = None
) -> list[dict[str, Any]]:
    return [r for r in rows if r["method"] == method and (layer is None or r["layer"] == layer)]


def run_summary(run_dir: Path) -> dict[str, Any]:
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    seconds = sum(r["seconds"] for r in summary["history"])
    return {
        "val_acc": summary["best"]["val_acc"],
        "best_epoch": summary["best"]["epoch"],
        "val_images": config["data"]["val_images"],
        "train_images": config["data"]["train_images"],
        "cam_layer": config["cam_layer"]["layer"],
        "cam_size": config["cam_layer"]["map_size"],
        "train_seconds": round(seconds, 1),
    }


def top1(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Top-1 accuracy on the single-object evaluation images (one row per image)."""
    single = {r["id"]: float(r["top1_correct"]) for r in rows if r.get("objects") == 1}
    return mean_ci(list(single.values()))


def localization(rows: list[dict[str, Any]]) -> tuple[tuple[float, float], ...]:
    """Pointing, energy in box and box IoU: mean and 95% half-width each."""
    return (
        mean_ci([r["pointing"] for r in rows]),
        mean_ci([r["energy"] for r in rows]),
        mean_ci([r["iou"] for r in rows if r.get("iou") is not None]),
    )


def pooled_middle_layer(run_dir: Path) -> str:
    """The last module of the pooled net's second block (after one 2x2 pooling)."""
    from camscope import load_model

    model, _ = load_model(str(run_dir))
    pools = [i for i, m in enumerate(model.features) if type(m).__name__ == "MaxPool2d"]
    return f"features.{pools[1] - 1}" if len(pools) > 1 else "features"


def gapnet_experiment(
    out: Path, opts: argparse.Namespace, log: Path
) -> tuple[dict[str, Any], list[str]]:
    shape = ["--width", str(opts.width), "--depth", str(opts.depth)]
    runs = {
        name: train(out, name, ["--arch", name, *shape], opts, log, opts.train_images, opts.epochs)
        for name in ("gapnet", "gapnet-pooled")
    }
    results: dict[str, Any] = {}
    lines = [
        "| model | CAM layer | CAM size | val acc | top-1 on eval (1 object) | pointing % | energy in box % | box IoU | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    evals = {}
    for name, run_dir in runs.items():
        facts = run_summary(run_dir)
        ev = evaluate(run_dir, "cam,gradcam", None, opts, log)
        evals[name] = ev
        cam = select(ev["rows"], "cam")
        acc, acc_ci = top1(cam)
        point, energy, iou = localization(cam)
        results[name] = {
            **facts,
            "top1": [acc, acc_ci],
            "pointing": point,
            "energy": energy,
            "iou": iou,
        }
        h, w = facts["cam_size"]
        lines.append(
            f"| {name} | {facts['cam_layer']} | {h}x{w} | {facts['val_acc']:.3f} | {fmt(acc, acc_ci, 100)}% | "
            f"{fmt(*point)} | {fmt(*energy)} | {fmt(*iou, digits=3)} | {facts['train_seconds']:.0f} |"
        )
    # Architecture or layer? Grad-CAM at the pooled net's second block, its finest map after
    # one pooling (16x16 at 32 px).
    middle = pooled_middle_layer(runs["gapnet-pooled"])
    mid = evaluate(runs["gapnet-pooled"], "gradcam", middle, opts, log, name="eval_middle")
    point, energy, iou = localization(select(mid["rows"], "gradcam"))
    size = layer_sizes(runs["gapnet-pooled"], (middle,))[middle]
    results["gapnet-pooled"]["middle"] = {
        "layer": middle,
        "size": size,
        "pointing": point,
        "energy": energy,
        "iou": iou,
    }
    lines.append(
        f"| gapnet-pooled, Grad-CAM at its 2nd block | {middle} | {size[0]}x{size[1]} | (same) | | "
        f"{fmt(*point)} | {fmt(*energy)} | {fmt(*iou, digits=3)} | |"
    )
    lines += [
        "",
        "| paired difference, gapnet minus gapnet-pooled (same images, CAM) | mean ± 95% | n |",
        "|---|---|---|",
    ]
    for key, label in (
        ("pointing", "pointing %"),
        ("energy", "energy in box %"),
        ("iou", "box IoU"),
    ):
        mean, half, n = paired(
            select(evals["gapnet-pooled"]["rows"], "cam"),
            select(evals["gapnet"]["rows"], "cam"),
            key,
        )
        results.setdefault("paired", {})[key] = [mean, half, n]
        lines.append(f"| {label} | {fmt(mean, half, digits=3 if key == 'iou' else 1)} | {n} |")
    return results, lines


def stem_experiment(
    out: Path, opts: argparse.Namespace, log: Path
) -> tuple[dict[str, Any], list[str]]:
    runs = {
        stem: train(
            out,
            f"resnet18-{stem}",
            ["--arch", "resnet18", "--stem", stem],
            opts,
            log,
            opts.stem_images,
            opts.stem_epochs,
        )
        for stem in ("imagenet", "cifar")
    }
    layers = ("layer4", "layer3", "layer2")
    results: dict[str, Any] = {}
    lines = [
        "| stem | val acc | top-1 on eval (1 object) | layer | map size | pointing % | energy in box % | box IoU | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, run_dir in runs.items():
        facts = run_summary(run_dir)
        ev = evaluate(run_dir, "gradcam", ",".join(layers), opts, log)
        sizes = {name: shape for name, shape in layer_sizes(run_dir, layers).items()}
        acc, acc_ci = top1(select(ev["rows"], "gradcam", layers[0]))
        results[stem] = {**facts, "top1": [acc, acc_ci], "layers": {}}
        for layer in layers:
            rows = select(ev["rows"], "gradcam", layer)
            point, energy, iou = localization(rows)
            results[stem]["layers"][layer] = {
                "size": sizes[layer],
                "pointing": point,
                "energy": energy,
                "iou": iou,
            }
            h, w = sizes[layer]
            lines.append(
                f"| {stem} | {facts['val_acc']:.3f} | {fmt(acc, acc_ci, 100)}% | {layer} | {h}x{w} | "
                f"{fmt(*point)} | {fmt(*energy)} | {fmt(*iou, digits=3)} | {facts['train_seconds']:.0f} |"
            )
    return results, lines


def layer_sizes(run_dir: Path, layers: tuple[str, ...]) -> dict[str, list[int]]:
    import torch

    from camscope import load_model
    from camscope.core.layers import list_layers

    model, spec = load_model(str(run_dir))
    infos = {
        i.name: list(i.shape[-2:]) for i in list_layers(model, torch.zeros(1, 3, *spec.input_size))
    }
    return {layer: infos[layer] for layer in layers}


def side_by_side(path: Path, runs: list[tuple[str, Path, str]], count: int, title: str) -> None:
    """Rows: evaluation images (box drawn on the input); columns: the CAM (gapnet at its ``auto``
    layer) or Grad-CAM of the true class for each (label, run folder, layer)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from camscope import explain, load_model
    from camscope.data.synthetic import SyntheticBenchmark
    from camscope.io import preprocess
    from camscope.viz import overlay

    loaded = [(label, *load_model(str(run_dir)), layer) for label, run_dir, layer in runs]
    size = loaded[0][2].input_size[0]
    bench = SyntheticBenchmark(count * 3, size=size, seed=0, two_object_fraction=0.0)
    fig = Figure(figsize=(1.9 * (len(runs) + 1), 2.1 * count + 0.5), dpi=110)
    axes = fig.subplots(count, len(runs) + 1, squeeze=False)
    for i in range(count):
        sample = bench[i * 3]
        picture = sample.image
        obj = sample.objects[0]
        axes[i, 0].imshow(picture)
        x0, y0, x1, y1 = obj.box
        axes[i, 0].add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime")
        )
        axes[i, 0].set_title(f"input: {obj.label}", fontsize=8)
        for j, (label, model, spec, layer) in enumerate(loaded, start=1):
            x = preprocess(picture, spec)
            method = "cam" if "gapnet" in label else "gradcam"
            target = [spec.class_names.index(obj.label)]
            res = explain(model, x, method, layer=layer, targets=target)
            h, w = res.raw[method].shape[-2:]
            axes[i, j].imshow(overlay(picture, res.maps[method][0].numpy()))
            axes[i, j].set_title(f"{label}\n{method} {res.layer} {h}x{w}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92, wspace=0.05, hspace=0.25)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/findings"))
    parser.add_argument("--only", choices=("gapnet", "stem"), default=None)
    parser.add_argument("--train-images", type=int, default=800)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--stem-images", type=int, default=400, help="ResNet-18 experiment")
    parser.add_argument("--stem-epochs", type=int, default=6, help="ResNet-18 experiment")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figures", type=Path, default=None, help="copy the grids here")
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    log = opts.out / "commands.log"
    findings: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(opts).items()}}
    report: list[str] = []
    if opts.only in (None, "gapnet"):
        findings["gapnet"], lines = gapnet_experiment(opts.out, opts, log)
        report += ["## gapnet vs gapnet-pooled", "", *lines, ""]
        side_by_side(
            opts.out / "gapnet_vs_pooled.png",
            [
                ("gapnet", opts.out / "gapnet", "auto"),
                ("gapnet-pooled", opts.out / "gapnet-pooled", "auto"),
            ],
            4,
            "CAM of the true class at 32 px: no pooling vs pooled (same parameters)",
        )
    if opts.only in (None, "stem"):
        findings["stem"], lines = stem_experiment(opts.out, opts, log)
        report += ["## ResNet-18 at 32 px: ImageNet stem vs CIFAR stem", "", *lines, ""]
        side_by_side(
            opts.out / "resnet18_stems.png",
            [
                ("ImageNet stem", opts.out / "resnet18-imagenet", "layer4"),
                ("ImageNet stem", opts.out / "resnet18-imagenet", "layer2"),
                ("CIFAR stem", opts.out / "resnet18-cifar", "layer4"),
                ("CIFAR stem", opts.out / "resnet18-cifar", "layer2"),
            ],
            4,
            "ResNet-18 at 32 px: Grad-CAM of the true class at layer4 (last) and layer2 (middle)",
        )
    (opts.out / "findings.json").write_text(json.dumps(findings, indent=2))
    (opts.out / "findings.md").write_text("\n".join(report))
    print("\n".join(report))
    if opts.figures:
        opts.figures.mkdir(parents=True, exist_ok=True)
        for png in opts.out.glob("*.png"):
            shutil.copy(png, opts.figures / f"training_{png.name}")


if __name__ == "__main__":
    main()

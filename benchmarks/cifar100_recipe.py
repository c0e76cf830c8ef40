"""Seed 003's CIFAR-100 recipe for the families it names, one ``camscope train`` run each (a GPU job).

Bhardwaj & Ruhi (seed 003) train ResNet-34/50/101, EfficientNet(V2), MobileNet-V3, RegNet and Swin
on CIFAR-100 from scratch: a 90/10 train/validation split, cross-entropy, AdamW or SGD, batch 64,
40 epochs, 32-px images. This runs that recipe with ``camscope train`` (AdamW, warm-up + cosine;
``--stem imagenet`` keeps the published architectures as the seed did, ``--stem cifar`` gives them
the small-input stem) and prints a table of validation accuracy, time per model and the map size
of the layer Grad-CAM reads by default, with the command of every run.

    python benchmarks/cifar100_recipe.py --data ~/data --download --out out/cifar100
    python benchmarks/cifar100_recipe.py --data ~/data --stem cifar --models resnet50,regnety_004
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODELS = (
    "resnet34",
    "resnet50",
    "resnet101",
    "efficientnet_b0",
    "efficientnetv2_s",
    "mobilenetv3_large_100",
    "regnety_004",
    "swin_tiny",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, help="folder holding (or to hold) cifar-100-python"
    )
    parser.add_argument("--out", type=Path, default=Path("out/cifar100"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--stem", choices=("imagenet", "cifar"), default="imagenet")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=8)
    opts = parser.parse_args()
    rows = []
    for name in opts.models.split(","):
        run_dir = opts.out / f"{name}-{opts.stem}"
        command = [sys.executable, "-m", "camscope", "train", "--data", f"cifar100:{opts.data}"]
        command += ["--arch", name, "--stem", opts.stem, "--epochs", str(opts.epochs)]
        command += ["--batch-size", "64", "--optimizer", "adamw", "--val-split", "0.1"]
        command += ["--out", str(run_dir), "--device", opts.device, "--workers", str(opts.workers)]
        command += ["--explain", "8", "--no-progress"]
        if opts.download:
            command.append("--download")
        if (run_dir / "last.ckpt").exists():
            command = [*command[:4], "--resume", "--out", str(run_dir), "--no-progress"]
        print("$", " ".join(command[2:]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        summary = json.loads((run_dir / "summary.json").read_text())
        layer = summary["cam_layer"]
        rows.append(
            f"| {name} | {opts.stem} | {summary['best']['val_acc']:.4f} | {summary['best']['epoch']} | "
            f"{seconds / 60:.1f} | {layer['layer']} {layer['map_size'][0]}x{layer['map_size'][1]} |"
        )
    print("| model | stem | val acc | best epoch | minutes | Grad-CAM layer at 32 px |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""What the evaluation metrics cost beyond the model's own forward passes.

For each metric family that runs the model (``drop``, ``deletion``, ``insertion``, ``road``,
``occlusion``) this runs ``camscope evaluate``'s library entry point on the built-in benchmark
with one method, the family alone, and reads the run's ``timing.json``: the time of the family's
stage (plus the one classifying forward per image), the number of images the model saw and the
time spent inside the model. The difference is what the metric itself adds (masking, ranking,
blurring, imputation, correlation), printed as a percentage of the forward time. Every family runs
once untimed first (torch's one-time start-up costs); each run makes its own fast copy of the model
and its TorchScript graph, inside its forward time (about 0.3 s for EfficientNet-Lite0), and the process
uses the allocator setting of the ``camscope`` command (:mod:`camscope.allocator`) unless
``--default-allocator`` is given.

    python benchmarks/evaluation.py                      # default model, builtin:16, gradcam
    python benchmarks/evaluation.py --images 32 --model resnet50 --random-init
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from camscope import evaluation, load_model
from camscope.allocator import tune_allocator
from camscope.data.synthetic import SyntheticBenchmark

FAMILIES = ("drop", "deletion", "insertion", "road", "occlusion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    parser.add_argument("--default-allocator", action="store_true")
    args = parser.parse_args()
    if not args.default_allocator:
        tune_allocator()
    model, spec = load_model(args.model, pretrained=False if args.random_init else None)
    size = int(spec.input_size[0])
    data = list(SyntheticBenchmark(args.images, size=size, seed=0))
    print(
        f"model={spec.name} images={args.images} method={args.method} threads={torch.get_num_threads()}"
    )
    print(
        "| family | stage s | forwards (images) | forward s | ms / forward image | overhead % of forward |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for family in FAMILIES:
        timing = run_family(model, spec, data, family, args)  # warm-up
        timing = run_family(model, spec, data, family, args)
        stages = timing["by_stage"]
        stage = stages.get(family, 0.0) + stages.get("classify", 0.0)
        fwd_s, fwd_n = timing["metric_forward_seconds"], timing["metric_forward_images"]
        overhead = 100.0 * (stage - fwd_s) / max(fwd_s, 1e-9)
        print(
            f"| {family} | {stage:.2f} | {fwd_n} | {fwd_s:.2f} | "
            f"{1000 * fwd_s / max(fwd_n, 1):.1f} | {overhead:.1f} |",
            flush=True,
        )


def run_family(
    model: torch.nn.Module, spec: Any, data: list[Any], family: str, args: argparse.Namespace
) -> dict[str, Any]:
    config = evaluation.EvalConfig(
        methods=[args.method], metrics=[family], steps=args.steps, model=spec.name
    )
    with tempfile.TemporaryDirectory() as tmp:
        evaluation.run_evaluation(model, spec, data, config, Path(tmp), progress=False, examples=0)
        return dict(json.loads((Path(tmp) / "timing.json").read_text()))


if __name__ == "__main__":
    main()

"""Recipro-CAM against Score-CAM on the offline default model (EfficientNet-Lite0 at ``bn2``, 7 x 7 x
1280), one 224 x 224 image, CPU, one thread: the median of ``--repeats`` timed calls after one
warm-up call each. Byun & Lee (arXiv:2209.14074) report Recipro-CAM about 148x faster than
Score-CAM on their setup; this measures the ratio of camscope's two implementations.

    python benchmarks/reciprocam_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import camscope
from camscope.data.inputs import demo_images
from camscope.io import preprocess
from camscope.models import load_model


def timed(model: torch.nn.Module, x: torch.Tensor, method: str, repeats: int) -> float:
    camscope.explain(model, x, method, targets=[285])  # warm-up (Score-CAM builds its fast copy)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        camscope.explain(model, x, method, targets=[285])
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, spec = load_model("efficientnet_lite0")
    x = preprocess(dict(demo_images())["chelsea"], spec)
    recipro = timed(model, x, "reciprocam", args.repeats)
    score = timed(model, x, "scorecam", args.repeats)
    print(f"reciprocam {recipro:.3f} s, scorecam {score:.3f} s: {score / recipro:.1f}x faster")


if __name__ == "__main__":
    main()

"""The robustness metrics: camscope against Quantus on the same model, method and noisy samples.

Both compute max-sensitivity, average-sensitivity and the local Lipschitz estimate of one method's
maps on the same images with the same noise (Quantus gets camscope's noise through its
``perturb_func``, camscope's explain call through its ``explain_func``), so the numbers must agree
and the time shows what each one's bookkeeping costs around the same explain calls. Quantus runs
each metric on its own (``N`` explain calls of the batch per metric, ``3 N`` in all); camscope
computes all five of its robustness numbers (those three, top-k intersection, centre-of-mass shift)
from one set of ``N`` noisy copies, explained ``--batch-size`` images at a time. The reference is
one plain explain call of the batch. Rounds are interleaved and the median is reported.

    python benchmarks/robustness.py                         # default model, gradcam, 8 images, N = 8
    python benchmarks/robustness.py --images 4 --samples 4 --method layercam --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from camscope import explain, load_model
from camscope.allocator import tune_allocator
from camscope.data.synthetic import SyntheticBenchmark
from camscope.evaluation import to_input
from camscope.metrics import robustness as rm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--radius", type=float, default=0.02, help="pixel scale, as evaluate")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tune_allocator()
    import quantus

    model, spec = load_model(args.model)
    data = list(SyntheticBenchmark(args.images, size=int(spec.input_size[0]), seed=0))
    x = torch.stack([to_input(s, spec)[0] for s in data])
    with torch.no_grad():
        y = model(x).argmax(1)
    std = torch.tensor(spec.std).view(1, 1, 3, 1, 1)
    deltas = rm.uniform_noise(x.shape[1:], args.samples, args.radius, range(len(data))) / std

    def maps_of(inputs: torch.Tensor, classes: torch.Tensor) -> Any:
        return explain(model, inputs, args.method, "auto", classes)

    def camscope_run() -> dict[str, np.ndarray]:
        clean = maps_of(x, y).maps

        def explain_fn(inputs: torch.Tensor, classes: torch.Tensor) -> Any:
            r = maps_of(inputs, classes)
            return r.maps, r.logits.argmax(1)

        got = rm.robustness_scores(explain_fn, x, clean, y, y, deltas, args.batch_size)
        return {k: v.numpy() for k, v in got[args.method].items()}

    def quantus_explain(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        t = torch.as_tensor(inputs).float()
        return maps_of(t, torch.as_tensor(targets).long()).maps[args.method][:, None].numpy()

    def replay() -> Callable[..., np.ndarray]:
        step = iter(range(args.samples))
        return lambda arr, indices, **kw: (x + deltas[:, next(step)]).reshape(len(x), -1).numpy()

    kinds = {
        "max_sensitivity": quantus.MaxSensitivity,
        "avg_sensitivity": quantus.AvgSensitivity,
        "lipschitz": quantus.LocalLipschitzEstimate,
    }

    def quantus_run() -> dict[str, np.ndarray]:
        a = quantus_explain(model, x.numpy(), y.numpy())
        out = {}
        for key, kind in kinds.items():
            metric = kind(
                nr_samples=args.samples,
                perturb_func=replay(),
                normalise=False,
                abs=False,
                disable_warnings=True,
            )
            out[key] = np.asarray(
                metric(
                    model=model,
                    x_batch=x.numpy(),
                    y_batch=y.numpy(),
                    a_batch=a,
                    explain_func=quantus_explain,
                    device="cpu",
                    batch_size=len(x),
                )
            )
        return out

    cases = {"explain": lambda: maps_of(x, y), "camscope": camscope_run, "quantus": quantus_run}
    times: dict[str, list[float]] = {k: [] for k in cases}
    results: dict[str, Any] = {}
    for _ in range(1 + args.repeats):  # the first round warms up (and is not counted)
        for name, run in cases.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v[1:] or v) for k, v in times.items()}
    print(
        f"model={spec.name} method={args.method} images={args.images} samples={args.samples} "
        f"radius={args.radius} threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    print("| case | seconds | x one explain call | explain calls |")
    print("|---|---:|---:|---:|")
    calls = {"explain": 1, "camscope": 1 + -(-args.images * args.samples // args.batch_size)}
    calls["quantus"] = 1 + 3 * args.samples
    for name in cases:
        print(
            f"| {name} | {median[name]:.2f} | {median[name] / median['explain']:.1f} | {calls[name]} |"
        )
    print("| metric | camscope mean | Quantus mean | max abs difference |")
    print("|---|---:|---:|---:|")
    for key in kinds:
        ours, theirs = results["camscope"][key], results["quantus"][key]
        diff = float(np.abs(ours - theirs).max())
        print(f"| {key} | {ours.mean():.5f} | {theirs.mean():.5f} | {diff:.2e} |")


if __name__ == "__main__":
    main()

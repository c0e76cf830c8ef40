"""The figure and the cost table of docs/vit.md, from a ViT run folder (offline).

    python docs/scripts/vit_figure.py RUN_DIR docs/images/vit_methods.jpg [--time-images 16]

Figure: the first image of each class in the evaluation's built-in set (`builtin:N`, seed 0,
the images `camscope evaluate --data builtin:200` scores), each explained for its object's class
by every method at the default layer, with the object's box drawn in green. The scenes are drawn
at 160 px for reading; the model saw the same scene rendered at its own input size, and the maps
are its maps, upsampled. Costs: each method alone, one `explain` call per batch of 8 images and
one target (the object's class), best of 3 runs, one torch thread; printed as Markdown rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import camscope
from camscope.data.synthetic import SyntheticBenchmark, trained_class_ids
from camscope.io import preprocess, resize_map
from camscope.methods import estimate_passes, get_method
from camscope.viz.grid import Panel, compose_grid, grid_layout

METHODS = [
    "gradcam",
    "legrad",
    "attention-rollout",
    "transformer-attribution",
    "vit-reciprocam",
    "randomcam",
]
TITLES = {
    "gradcam": "Grad-CAM",
    "legrad": "LeGrad",
    "attention-rollout": "rollout",
    "transformer-attribution": "Chefer",
    "vit-reciprocam": "ViT-Recipro-CAM",
    "randomcam": "Random (floor)",
}
SHOWN = 160  # px of each scene in the figure


def first_of_each_class(bench: SyntheticBenchmark, limit: int) -> list[int]:
    """Indices of the first single-object image of each object kind."""
    found: dict[str, int] = {}
    for i in range(limit):
        objects = bench[i].objects
        if len(objects) == 1 and objects[0].label not in found:
            found[objects[0].label] = i
    return [found[k] for k in sorted(found, key=found.__getitem__)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("figure")
    parser.add_argument("--images", type=int, default=200, help="the evaluation's N")
    parser.add_argument("--time-images", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, spec = camscope.load_model(args.run_dir)
    size = spec.input_size[0]
    ids = trained_class_ids(spec.class_names)
    bench = SyntheticBenchmark(args.images, size=size, seed=0, class_ids=ids)
    shown = SyntheticBenchmark(args.images, size=SHOWN, seed=0, class_ids=ids)
    picks = first_of_each_class(bench, args.images)
    x = torch.cat([preprocess(bench[i].image, spec) for i in picks])
    targets = [bench[i].objects[0].class_ids[0] for i in picks]
    res = camscope.explain(model, x, METHODS, targets=targets)
    probs = res.prediction.probabilities if res.prediction is not None else None
    strips = []
    for row, i in enumerate(picks):
        sample = shown[i]
        picture = sample.image.convert("RGB")
        ImageDraw.Draw(picture).rectangle(sample.objects[0].box, outline=(0, 220, 0), width=2)
        panels = [
            Panel(TITLES[m], heatmap=resize_map(res.maps[m][row], (SHOWN, SHOWN))) for m in METHODS
        ]
        label = f"#{i}: {sample.objects[0].label}"
        if probs is not None:
            label += f" (p = {float(probs[row, targets[row]]):.2f})"
        rows = [(label, panels)]
        strip = compose_grid(picture, rows, cell=SHOWN, max_columns=len(METHODS))
        if row < len(picks) - 1:  # one colour bar, under the last strip
            layout = grid_layout(picture.size, rows, cell=SHOWN, max_columns=len(METHODS))
            legend_top = layout.legends[0][1]
            strip = strip.crop((0, 0, strip.width, legend_top - 4))
        strips.append(strip)
    width = max(s.width for s in strips)
    figure = Image.new("RGB", (width, sum(s.height for s in strips)), (255, 255, 255))
    top = 0
    for strip in strips:
        figure.paste(strip, (0, top))
        top += strip.height
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.figure, quality=85, optimize=True)
    print(f"figure: {args.figure} ({figure.width}x{figure.height}, layer {res.layer})")
    _costs(model, spec, bench, args.time_images)


def _costs(model: torch.nn.Module, spec, bench: SyntheticBenchmark, n: int) -> None:
    x = torch.cat([preprocess(bench[i].image, spec) for i in range(n)])
    targets = [bench[i].objects[0].class_ids[0] for i in range(n)]
    passes = estimate_passes(model, x[:1], METHODS)
    print("| method | passes per image (one class) | s per image |")
    print("|---|---|---|")
    for method in METHODS:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for b in range(0, n, 8):
                camscope.explain(model, x[b : b + 8], method, targets=targets[b : b + 8])
            best = min(best, time.perf_counter() - start)
        text = get_method(method).passes_text
        print(f"| `{method}` | {passes[method]} beyond the shared ones: {text} | {best / n:.4f} |")


if __name__ == "__main__":
    main()

"""Regenerate docs/images/families_grid.png (offline): `.venv/bin/python docs/images/make_families_grid.py`.

EfficientNet-Lite0 uses the real ImageNet weights that ship offline with camscope; ViT-B/16 and
Swin-T are torchvision architectures at *random initialisation* (no pretrained ViT/Swin weights
can be installed offline), so their maps show what the plumbing produces, not what they look at.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from skimage import data
from torch import nn

import camscope

OUT = Path(__file__).resolve().parent / "families_grid.png"
METHODS = ["gradcam", "layercam"]


def preprocess(image: np.ndarray, size: tuple[int, int], mean, std, mode: str) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = (
        F.interpolate(x, size=size, mode=mode, align_corners=False)
        if mode != "nearest"
        else F.interpolate(x, size=size)
    )
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def main() -> None:
    image = data.chelsea()  # the cat photo shipped with scikit-image
    torch.manual_seed(0)
    lite, spec = camscope.load_model()
    vit = tvm.vit_b_16(weights=None)
    nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision zero-inits the head
    swin = tvm.swin_t(weights=None)
    columns = [
        (
            "EfficientNet-Lite0 (ImageNet weights)",
            lite,
            spec.input_size,
            spec.mean,
            spec.std,
            spec.interpolation,
        ),
        (
            "ViT-B/16 (random init)",
            vit.eval(),
            (224, 224),
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
            "bilinear",
        ),
        (
            "Swin-T (random init)",
            swin.eval(),
            (224, 224),
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
            "bicubic",
        ),
    ]
    fig, axes = plt.subplots(
        len(METHODS), len(columns), figsize=(3.2 * len(columns), 3.4 * len(METHODS))
    )
    shown = np.asarray(
        F.interpolate(
            torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(224, 224), mode="bilinear"
        )[0]
        .permute(1, 2, 0)
        .clamp(0, 255)
        .byte()
    )
    for col, (title, model, size, mean, std, mode) in enumerate(columns):
        x = preprocess(image, size, mean, std, "bicubic" if mode == "bicubic" else "bilinear")
        res = camscope.explain(model, x, METHODS, layer="auto")
        label = ""
        if spec.class_names and col == 0:
            label = (
                f"\n→ {spec.class_names[int(res.targets[0])]} ({float(res.probabilities[0]):.2f})"
            )
        for row, method in enumerate(METHODS):
            heat = F.interpolate(res.maps[method][:, None], size=(224, 224), mode="bilinear")[
                0, 0
            ].numpy()
            ax = axes[row, col]
            ax.imshow(shown)
            ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{title}{label}\nlayer: {res.layer}", fontsize=8)
            if col == 0:
                ax.set_ylabel(method, fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

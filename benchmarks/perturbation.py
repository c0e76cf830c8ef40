"""Score-CAM and Ablation-CAM: camscope vs pytorch-grad-cam and torchcam, same inputs, one run.

Models (random init, no downloads): timm ``efficientnet_lite0`` at ``blocks.6`` (320 channels,
7x7) and torchvision ``resnet50`` at ``layer4`` (2048 channels, 7x7); one 224 px image, batch 1.
For every method and library it prints the wall time, the time ratio to camscope and the Pearson
correlation of the maps with camscope's (all maps brought to 224 x 224 with bilinear
interpolation). camscope's Score-CAM runs with ``score="channel-softmax"``, the weighting both
peers use (softmax over channels of the target logit); the correlation of the paper's weighting
(``score="probability"``, camscope's default) is printed as well.

    python benchmarks/perturbation.py --device cpu
    python benchmarks/perturbation.py --device cuda --models resnet50
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam draws a bar per image

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def build(name: str, device: str) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        import timm

        return timm.create_model(name, pretrained=False).eval().to(device), "blocks.6"
    import torchvision

    return torchvision.models.resnet50(weights=None).eval().to(device), "layer4"


def to224(cam: Any, device: str) -> Tensor:
    t = torch.as_tensor(cam, dtype=torch.float32, device=device).reshape(1, 1, *cam.shape[-2:])
    t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
    t = t.clamp(min=0)
    return (t - t.min()) / (t.max() - t.min()).clamp(min=1e-12)


def pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp(min=1e-30))


def timed(fn: Callable[[], Tensor], device: str) -> tuple[float, Tensor]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def ours(model: nn.Module, x: Tensor, layer: str, method: str, cls: int, **opts: Any) -> Tensor:
    from camscope import explain

    return explain(model, x, method, layer, targets=cls, method_options=opts).maps[method][0]


def gradcam_lib(model: nn.Module, x: Tensor, layer: str, method: str, cls: int) -> Tensor:
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    kind = ScoreCAM if method == "scorecam" else AblationCAM
    with kind(model=model, target_layers=[module]) as cam:
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
    return to224(out[0], str(x.device))


def torchcam_lib(model: nn.Module, x: Tensor, layer: str, _method: str, cls: int) -> Tensor:
    from torchcam.methods import ScoreCAM

    with ScoreCAM(model, layer, batch_size=32, input_shape=tuple(x.shape[1:])) as extractor:
        with torch.no_grad():
            scores = model(x)
        cams = extractor(class_idx=cls, scores=scores)
    return to224(cams[0][0], str(x.device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--methods", nargs="+", default=["scorecam", "ablationcam"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--skip-unoptimised", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__}")
    print("| model | method | library | time (s) | peer / camscope | Pearson r vs camscope |")
    print("|---|---|---|---:|---:|---:|")
    for name in args.models:
        model, layer = build(name, dev)
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(dev)
        with torch.no_grad():
            cls = int(model(x).argmax(1))
        for method in args.methods:
            peers: dict[str, Callable[[], Tensor]] = {}
            if method == "scorecam":
                ref_opts: dict[str, Any] = {"score": "channel-softmax"}
                peers["torchcam"] = partial(torchcam_lib, model, x, layer, method, cls)
            else:
                ref_opts = {}
            peers["pytorch-grad-cam"] = partial(gradcam_lib, model, x, layer, method, cls)
            t_ours, m_ours = timed(partial(ours, model, x, layer, method, cls, **ref_opts), dev)
            print(f"| {name} | {method} | camscope | {t_ours:.2f} | 1.00 | 1.0000 |", flush=True)
            if method == "scorecam":
                t_p, m_p = timed(partial(ours, model, x, layer, method, cls), dev)
                r = pearson(m_p, m_ours)
                print(
                    f"| {name} | {method} | camscope (paper weights) | {t_p:.2f} | "
                    f"{t_p / t_ours:.2f} | {r:.4f} |",
                    flush=True,
                )
                if not args.skip_unoptimised:
                    opts = {**ref_opts, "optimize": False}
                    t_u, m_u = timed(partial(ours, model, x, layer, method, cls, **opts), dev)
                    diff = float((m_u - m_ours).abs().max())
                    print(
                        f"| {name} | {method} | camscope optimize=False | {t_u:.2f} | "
                        f"{t_u / t_ours:.2f} | {pearson(m_u, m_ours):.4f} (max diff {diff:.1e}) |",
                        flush=True,
                    )
            for peer, fn in peers.items():
                t_peer, m_peer = timed(fn, dev)
                print(
                    f"| {name} | {method} | {peer} | {t_peer:.2f} | {t_peer / t_ours:.2f} | "
                    f"{pearson(m_peer, m_ours):.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

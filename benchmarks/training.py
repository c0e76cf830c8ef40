"""Images per second of ``camscope train``'s loop against a minimal hand-written PyTorch loop.

Both loops train their own copy of the same initial model on the same batches: the built-in set
rendered once (``camscope.training.data``), the same ``DataLoader`` (pad-and-crop + flip,
``--workers`` processes, ``--batch-size``), AdamW, cross-entropy. The hand-written loop is what a
tutorial writes::

    for images, labels, _ in loader:
        x = (images.float() / 255 - mean) / std
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()

camscope's loop (:func:`camscope.training.loop.train_epoch`) adds the per-step schedule, the AMP
scaler (disabled in float32), on-device loss/accuracy sums and the data-wait clock. The two run
interleaved, one epoch each per round, so outside load hits both alike; the table gives the median
images/s over the rounds, the median of the per-round ratios (each pair ran back to back, under
the same outside load), and the share of the epoch spent waiting for the DataLoader.

A second table runs the whole ``camscope.training.train`` on the same data for ``--rounds``
epochs: its training-loop images/s (``summary.json``) and its end-to-end rate (training images x
epochs over the wall time of the call, which also renders the data, builds the model, validates,
writes checkpoints, curves and the confusion figure). It runs after the paired rounds, so its
ratio to the hand-written loop is not paired: read it as what a user sees, not as the loop's cost.

    python benchmarks/training.py                              # gapnet-pooled, 32 px, 3 rounds
    python benchmarks/training.py --arch resnet18 --images 512 --rounds 5 --markdown
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from camscope.models.architectures import build_classifier
from camscope.models.spec import IMAGENET_MEAN, IMAGENET_STD
from camscope.training import TrainConfig, train
from camscope.training.data import load_training_data
from camscope.training.loop import Step, train_epoch
from camscope.training.optim import build_optimizer, build_schedule
from camscope.training.transforms import ImageTransform, LabelledImages, Normalize, collate


def hand_written_epoch(model, loader, optimizer, mean, std) -> tuple[int, float, float]:
    """The minimal loop; returns (images, seconds, seconds waiting for data)."""
    model.train()
    device = mean.device
    images_seen, wait = 0, 0.0
    start = time.perf_counter()
    iterator = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            images, labels, _ = next(iterator)
        except StopIteration:
            break
        wait += time.perf_counter() - t0
        x = (images.to(device).float() / 255.0 - mean) / std
        loss = F.cross_entropy(model(x), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images_seen += labels.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images_seen, time.perf_counter() - start, wait


@dataclass
class Contest:
    """What both loops share: one DataLoader and two copies of one initial model, each with its
    optimizer (the hand-written loop's AdamW, camscope's :class:`Step`)."""

    images: int
    loader: DataLoader
    hand_model: torch.nn.Module
    hand_opt: torch.optim.Optimizer
    mean: torch.Tensor
    std: torch.Tensor
    step: Step


def contest(
    arch: str, images: int, size: int, batch_size: int, workers: int, epochs: int, device: str
) -> Contest:
    """The built-in set rendered once, pad-and-crop + flip, AdamW at 1e-3 for both loops."""
    data = load_training_data(f"builtin:{images}", None, 0.1, 0, image_size=size)
    dataset = LabelledImages(data.train.items, ImageTransform(size, "bilinear", "pad-crop"))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate
    )
    on = torch.device(device)
    torch.manual_seed(0)
    base = build_classifier(arch, len(data.classes), size).model.to(on)
    hand_model = copy.deepcopy(base)
    ours_model = copy.deepcopy(base)
    ours_opt = build_optimizer(ours_model, "adamw", 1e-3, 0.05)
    step = Step(
        ours_model,
        ours_opt,
        build_schedule(ours_opt, len(loader), epochs, 1.0, 1e-3, 0.0),
        torch.amp.GradScaler(on.type, enabled=False),
        torch.nn.CrossEntropyLoss(),
        Normalize(IMAGENET_MEAN, IMAGENET_STD, on),
        on,
    )
    return Contest(
        len(dataset),
        loader,
        hand_model,
        torch.optim.AdamW(hand_model.parameters(), lr=1e-3, weight_decay=0.05),
        torch.tensor(IMAGENET_MEAN, device=on).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD, device=on).view(1, 3, 1, 1),
        step,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="gapnet-pooled")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=640, help="built-in images (training set)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    size = args.image_size
    race = contest(
        args.arch, args.images, size, args.batch_size, args.workers, args.rounds + 1, "cpu"
    )
    hand_model, hand_opt, mean, std = race.hand_model, race.hand_opt, race.mean, race.std
    loader, step = race.loader, race.step
    print(
        f"arch={args.arch} size={size} train images={race.images} batch={args.batch_size} "
        f"workers={args.workers} threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    hand_epoch = hand_written_epoch(hand_model, loader, hand_opt, mean, std)  # warm-up
    train_epoch(step, loader)
    hand, ours = [], []
    for r in range(args.rounds):
        first_ours = r % 2 == 0
        for which in ("ours", "hand") if first_ours else ("hand", "ours"):
            if which == "hand":
                hand_epoch = hand_written_epoch(hand_model, loader, hand_opt, mean, std)
                hand.append(hand_epoch)
            else:
                stats = train_epoch(step, loader)
                ours.append((stats.images, stats.seconds, stats.data_wait))
    rate = lambda runs: statistics.median(n / s for n, s, _ in runs)  # noqa: E731
    wait = lambda runs: statistics.median(w / s for _, s, w in runs)  # noqa: E731

    # paired per round: both loops ran back to back, under the same outside load
    paired = statistics.median(
        (n1 / s1) / (n0 / s0) for (n0, s0, _), (n1, s1, _) in zip(hand, ours)
    )
    rows = [
        ("hand-written loop", rate(hand), 1.0, wait(hand)),
        ("camscope loop (train_epoch)", rate(ours), paired, wait(ours)),
    ]
    header = (
        "| loop | images/s (median) | x hand-written (median of per-round ratios) | data wait |"
    )
    print(header if args.markdown else header.replace("|", " ").strip())
    if args.markdown:
        print("|---|---|---|---|")
    for name, value, ratio, waiting in rows:
        print(f"| {args.arch}, {name} | {value:.1f} | {ratio:.3f} | {100 * waiting:.1f}% |")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(
            TrainConfig(
                data=f"builtin:{args.images}",
                out=str(Path(tmp) / "run"),
                arch=args.arch,
                image_size=size,
                epochs=args.rounds,
                batch_size=args.batch_size,
                workers=args.workers,
                val_split=0.1,
                progress=False,
            )
        )
        wall = time.perf_counter() - start
    loop_rate = result.summary["this_session"]["train_images_per_second"]
    end_to_end = race.images * args.rounds / wall
    print()
    header = (
        "| whole run | training-loop images/s | end-to-end images/s (wall) "
        "| x hand-written, loop / end-to-end (not paired) |"
    )
    print(header if args.markdown else header.replace("|", " ").strip())
    if args.markdown:
        print("|---|---|---|---|")
    print(
        f"| {args.arch}, camscope train, {args.rounds} epochs ({wall:.1f} s) | {loop_rate:.1f} "
        f"| {end_to_end:.1f} | {loop_rate / rate(hand):.3f} / {end_to_end / rate(hand):.3f} |"
    )


if __name__ == "__main__":
    main()

"""``camscope train``: train a classifier into a run folder that every other command loads as a model.

Options left out keep their defaults on a new run and the stored values on ``--resume``, so
``camscope train --resume --out RUN`` continues a run as it was started (``--epochs`` may grow).
Exit status: 0 done (or paused by ``--stop-after``), 1 some image files could not be read (skipped
and listed in ``summary.json``), 2 a usage or data error, 130 interrupted (``--resume`` continues
from the last finished epoch).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import UsageError
from . import options, values
from ._common import command_parser, echo, warn
from .options import positive_int, unit_float
from .values import split_list

_HELP = "train a classifier (class folders, CIFAR, the built-in set) into a run folder"
_DESCRIPTION = (
    "Train a classifier and write a run folder (config.json, model.safetensors, "
    "last.ckpt, metrics.csv, curves.png, confusion.png, summary.json) that "
    "`--model RUN_DIR` loads in every other command."
)
_EPILOG = """\
data (--data, the one grammar of docs/architecture.md; the data's classes are the model's):
  DIR                   one subfolder per class (ImageFolder layout)
  cifar10:DIR           CIFAR-10 python folder (cifar-10-batches-py); --download fetches it
  cifar100:DIR          CIFAR-100 python folder; --labels coarse for the 20 superclasses
  LIST.csv|LIST.parquet a list with path and label columns
  builtin:N[:SEED]      N built-in images of the training stream (one object each; class =
                        object kind; seed 0: evaluate's builtin:N draws other images)

architectures (--arch): gapnet, gapnet-pooled (seed 004: no pooling, GAP + linear; --width,
  --depth), any timm name (resnet18/34/50/101, efficientnet_b0, efficientnetv2_s,
  mobilenetv3_large_100, regnety_004, swin_tiny, vit_tiny_patch16_224, deit_tiny_patch16_224,
  ...), vgg16, vgg16_bn, torchvision:NAME. At 64 px or less CNNs get a CIFAR stem (3x3 stride-1
  first conv, no max-pool) and ViTs/DeiTs patches of S/8 px (an 8x8 token grid; --stem).

examples:
  camscope train --data builtin:1200 --arch gapnet --image-size 32 --epochs 12 --out runs/gap
  camscope train --data cifar100:~/data --arch resnet50 --epochs 40 --out runs/c100_r50
  camscope train --resume --out runs/c100_r50               # continue after an interruption
  torchrun --nproc_per_node 4 -m camscope train --data photos/ --arch resnet50 --out runs/r50
  camscope explain cat.jpg --model runs/gap                  # a run folder is a model
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "train", _HELP, _DESCRIPTION, _EPILOG)
    add = p.add_argument
    options.add(
        p,
        "data",
        "out",
        "resume",
        "seed",
        "batch_size",
        "device",
        "no_progress",
        left_out_is_none=True,  # an option left out keeps the stored value on --resume
        data={"help": "training data (see below)"},
        out={"required": True, "help": "the run folder"},
        seed={"help": "seed (0)"},
        batch_size={"help": "images per step and process (64)"},
        device={"help": "where to train (default auto: cuda when available, else cpu)"},
    )
    add("--arch", metavar="NAME", help="architecture (default resnet18)")
    add("--val", metavar="DIR|test", help="validation class folder, or 'test' (CIFAR's test batch)")
    add("--val-split", type=unit_float, metavar="F", help="validation share per class (0.1)")
    add("--labels", choices=("fine", "coarse"), help="CIFAR-100 labels (fine)")
    add("--download", action="store_true", default=None, help="fetch CIFAR when missing (online)")
    add(
        "--image-size",
        type=positive_int,
        metavar="S",
        help="input side (CIFAR 32, builtin 64, 224)",
    )
    add("--stem", choices=("auto", "cifar", "imagenet"), help="small-input stem (auto)")
    add("--width", type=positive_int, help="gapnet: channels per convolution (32)")
    add("--depth", type=positive_int, help="gapnet: blocks of two convolutions (3)")
    add("--arch-option", "-A", action="append", metavar="KEY=VALUE", help="architecture option")
    add("--pretrained", metavar="timm|FILE|RUN_DIR", help="fine-tune from local weights")
    add("--epochs", type=positive_int, help="epochs (40)")
    add("--optimizer", choices=("adamw", "sgd"), help="optimizer (adamw)")
    add("--lr", type=float, help="peak learning rate (adamw 1e-3, sgd 0.05)")
    add("--weight-decay", type=float, help="weight decay (adamw 0.05, sgd 5e-4)")
    add("--momentum", type=float, help="SGD momentum (0.9)")
    add("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov (on)")
    add("--warmup-epochs", type=float, help="linear warm-up before the cosine decay (1)")
    add("--min-lr", type=float, help="learning rate at the end of the cosine (0)")
    add("--label-smoothing", type=float, help="label smoothing (0)")
    add("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm (off)")
    add("--augment", choices=("auto", "crop", "pad-crop", "none"), help="augmentation (auto)")
    add(
        "--precision", choices=("auto", "fp32", "fp16", "bf16"), help="autocast (auto: fp16 on GPU)"
    )
    add("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="(GPU: on)")
    add("--patience", type=positive_int, help="early stopping after N epochs without progress")
    add("--monitor", choices=("val_acc", "val_loss"), help="best-epoch metric (val_acc)")
    add("--deterministic", action="store_true", default=None, help="deterministic algorithms")
    add("--devices", type=positive_int, help="data-parallel processes (torch DDP; 1)")
    add("--workers", type=int, help="DataLoader worker processes (0)")
    add("--stop-after", type=positive_int, metavar="N", help="stop after N epochs this session")
    add("--explain", type=int, metavar="N", help="Grad-CAM grids of N validation images at the end")
    return p


_NOT_FIELDS = {"run", "command", "verbose", "no_progress", "width", "depth", "arch_option"}


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user wrote (None = left out), plus the architecture options."""
    given = {k: v for k, v in vars(args).items() if k not in _NOT_FIELDS and v is not None}
    if args.out is not None:
        given["out"] = str(args.out)
    arch = dict(
        values.key_value(t, "--arch-option", "drop_rate=0.2") for t in split_list(args.arch_option)
    )
    arch.update({k: getattr(args, k) for k in ("width", "depth") if getattr(args, k) is not None})
    if arch:
        given["arch_options"] = arch
    given["progress"] = not args.no_progress
    return given


def run(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, resume_config, train

    given = _given(args)
    if args.resume:
        config = resume_config(args.out, **{k: v for k, v in given.items() if k != "out"})
    else:
        if not args.data:
            raise UsageError("--data is required for a new run (see `camscope train --help`)")
        config = TrainConfig(**given)
    # under torchrun every process runs this command; rank 0 speaks for the run
    speaks = os.environ.get("RANK", "0") == "0"
    try:
        result = train(config)
    except KeyboardInterrupt:
        if speaks:
            warn(
                f"camscope train: interrupted; `camscope train --resume --out {args.out}` continues"
            )
        return 130
    best = result.summary.get("best") or {}
    skipped = result.summary.get("skipped_files", {}).get("count", 0)
    if not speaks:
        return 1 if skipped else 0
    echo(
        f"{result.status}: {result.epochs_done}/{result.epochs_planned} epochs; best epoch "
        f"{best.get('epoch', '-')}: val acc {best.get('val_acc', float('nan')):.4f}, val loss "
        f"{best.get('val_loss', float('nan')):.4f}"
    )
    layer = result.summary.get("cam_layer", {})
    if layer:
        h, w = layer["map_size"]
        echo(f"Grad-CAM's default layer {layer['layer']}: {h}x{w} map")
    echo(f"run folder: {result.out} (use it as --model {result.out})")
    if skipped:
        warn(f"{skipped} unreadable image file(s) were skipped; see {result.out}/summary.json")
        return 1
    return 0

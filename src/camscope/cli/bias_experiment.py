"""``camscope bias-experiment``: the Grad-CAM paper's bias experiment, offline, end to end.

Writes a biased and a rebalanced training set and an independent test split of the built-in
objects with a planted corner cue, trains the same network on each with ``camscope train``, audits
both on the test split with ``camscope audit`` and writes ``bias.json`` and ``bias_grid.png``
(docs/bias.md). Exit status: 0 done, 2 usage error, 130 interrupted (``--resume`` continues).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options, values
from ._common import command_parser, echo, warn
from .options import positive_int, unit_float

_HELP = "train on a planted shortcut and on a rebalanced set, audit both (Grad-CAM Sec. 6.3)"
_DESCRIPTION = (
    "Reproduce the Grad-CAM paper's bias experiment offline: a planted corner cue goes "
    "with the class in the biased training set and not in the rebalanced one; the audit "
    "of both models on an independent test split shows the shortcut."
)
_EPILOG = """\
output (--out DIR):
  data/train-biased, data/train-balanced, data/test   the three splits (PNG files)
  runs/biased, runs/balanced                          training run folders (each is a --model)
  audit-biased, audit-balanced                        camscope audit outputs on data/test
  bias.json, bias_grid.png                            the comparison and the maps

examples:
  camscope bias-experiment --out out/bias                  # about 2 minutes on 2 CPU cores
  camscope bias-experiment --bias 0.9 --out out/bias-0.9
  camscope audit --model out/bias/runs/biased --data out/bias/data/test --out out/a
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = command_parser(subparsers, "bias-experiment", _HELP, _DESCRIPTION, _EPILOG)
    add = p.add_argument
    options.add(
        p,
        "out",
        "batch_size",
        "seed",
        "method",
        "device",
        "resume",
        "no_progress",
        out={"default": Path("out/bias")},
        batch_size={"default": 32, "help": "images per training step (default 32)"},
        seed={"help": "seed of data and weights (default 0)"},
        method={"help": "CAM method of the audit (default gradcam)"},
        device={"default": "cpu", "help": "where to train and audit (default cpu)"},
        resume={"help": "continue interrupted training runs in --out"},
    )
    add("--bias", type=unit_float, default=1.0, help="cue-class co-occurrence (default 1.0)")
    add("--train-images", type=positive_int, default=600, metavar="N", help="default 600")
    add("--test-images", type=positive_int, default=200, metavar="N", help="default 200")
    add("--size", type=positive_int, default=32, metavar="PX", help="image side (default 32)")
    add("--cue-size", type=float, default=0.25, metavar="F", help="cue side / image side (0.25)")
    add("--arch", default="gapnet-pooled", help="architecture (default %(default)s)")
    add("--width", type=positive_int, default=32, help="gapnet channels (default 32)")
    add("--depth", type=positive_int, default=2, help="gapnet blocks (default 2)")
    add("--epochs", type=positive_int, default=12, help="epochs per model (default 12)")
    add("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..bias.experiment import BiasExperiment, run_bias_experiment

    config = BiasExperiment(
        out=str(args.out),
        method=values.one_method(args, "the audit's map"),
        progress=not args.no_progress,
        **values.same_named(
            args,
            "bias train_images test_images size cue_size arch width depth epochs batch_size lr "
            "seed device resume",
        ),
    )
    try:
        result = run_bias_experiment(config)
    except KeyboardInterrupt:
        warn(f"interrupted; `camscope bias-experiment --resume --out {args.out}` continues")
        return 130
    for name, m in result["models"].items():
        energy = "-" if m["object_energy"] is None else f"{m['object_energy']:.2f}"
        echo(
            f"{name:8s} val acc {m['val_accuracy']:.3f}  test acc {m['test_accuracy']:.3f}  "
            f"cue agreement {m['cue_agreement']:.3f}  object energy {energy}  flagged: "
            f"{', '.join(m['flagged']) or 'none'}  hot spot on its cue: "
            f"{', '.join(m['hotspot_on_cue']) or 'none'}"
        )
    echo(f"results: {args.out}/bias.json, {args.out}/bias_grid.png ({result['seconds']:.0f} s)")
    return 0

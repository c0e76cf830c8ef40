"""``camscope adversarial``: attack images with FGSM or PGD and see what happens to the maps.

Writes, per image, ``<stem>.adv.png`` (the adversarial image, 8-bit), ``<stem>.adv.npy`` (float32
H x W x 3 in [0, 1]: the exact adversarial input at the model's input size) and
``<stem>.adversarial.png`` (clean image and map, adversarial image, the maps of the adversarial
and of the original class on it, the perturbation amplified); then ``adversarial.json`` with the
clean and adversarial classes, success (also after rounding to 8 bits) and how similar the
original class's map stays (Spearman, IoU of the top-15% regions, pointing game with boxes).
Unreadable images are reported and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import options, values
from ._common import command_parser, echo
from .failures import load_checked

_HELP = "FGSM/PGD adversarial images and how the maps change under the attack"
_EPILOG = """\
inputs:
  image files, folders or URLs (default: the demo images), or one annotated data set
  (builtin:N, VOC/COCO/CSV annotations as `camscope evaluate` reads them: adds the pointing game)

examples:
  camscope adversarial --attack fgsm --eps 2/255 --out out/adv
  camscope adversarial cat.jpg --attack pgd --eps 2/255 --steps 10 --target airliner
  camscope adversarial builtin:20 --attack pgd --eps 1/255 --method gradcam++
"""


def pixel_budget(text: str) -> float:
    """argparse type: a number or a fraction such as ``2/255``, in (0, 1]."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"expected a number or a fraction such as 2/255, got {text!r}"
        ) from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in (0, 1] (pixel units), got {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "adversarial", _HELP, __doc__, _EPILOG)
    add = parser.add_argument
    add("inputs", nargs="*", metavar="IMAGES|DATA", help="images, folders, URLs or one data set")
    options.add(parser, *options.MODEL)
    add("--attack", choices=("fgsm", "pgd"), default="pgd", help="(default pgd)")
    add(
        "--eps",
        type=pixel_budget,
        default=2 / 255,
        metavar="E",
        help="L-infinity budget on the [0, 1] pixel scale, e.g. 2/255 (default)",
    )
    add(
        "--steps", type=options.positive_int, default=10, metavar="N", help="PGD steps (default 10)"
    )
    add(
        "--step-size",
        type=pixel_budget,
        default=None,
        metavar="A",
        help="PGD step (default 2.5 * eps / steps, as Madry et al.)",
    )
    add("--random-start", action="store_true", help="PGD starts at a random point of the ball")
    options.add(
        parser,
        "seed",
        *options.DATA,
        "target",
        "method",
        "layer",
        "out",
        "batch_size",
        "colormap",
        "alpha",
        "multilabel",
        "max_pixels",
        "option",
        "no_progress",
        seed={"help": "seed of --random-start and builtin:N (default 0)"},
        unmapped=options.unmapped_help(("error", "skip"), folders="fail"),
        target={
            "default": None,
            "help": "targeted attack towards this class (index or name); default: untargeted. "
            "Images the model already gives this class are not attacked: they are listed, "
            "not counted as successes",
        },
        method={"help": "map method(s), comma list; the first one is drawn (default gradcam)"},
        out={"default": Path("out/adversarial")},
        batch_size={"default": 8, "help": "images per attack (default 8)"},
    )
    add(
        "--tolerance",
        type=options.non_negative_float,
        default=15.0,
        metavar="PX",
        help="pointing-game tolerance in pixels at the model input size (default 15)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data.inputs import open_images
    from ..data.progress import Progress
    from ..data.read import is_annotated
    from ..diagnosis.adversarial import AttackSettings, run_adversarial
    from ..methods import parse_methods

    methods = parse_methods(args.method)
    bar = Progress(label="camscope adversarial", enabled=not args.no_progress)
    layer = values.layer_spec(args.layer)
    model, spec = load_checked(args, layer)
    target = None
    if args.target is not None:
        from ..data.classes import parse_target

        parsed = parse_target(args.target, spec.class_names, model=spec.name, what="--target")
        if not isinstance(parsed, int):
            raise UsageError(f"--target {args.target!r}: name one class (an index or a name)")
        target = parsed
    settings = AttackSettings(
        steps=args.steps if args.attack == "pgd" else 1,
        target=target,
        methods=methods,
        layer=layer,
        method_options=values.method_options(args),
        progress=bar,
        on_skip=bar.skipped,
        **values.same_named(
            args,
            "attack eps step_size random_start seed batch_size tolerance colormap alpha "
            "max_pixels multilabel",
        ),
    )
    if len(args.inputs) == 1 and (
        args.images is not None or is_annotated(args.inputs[0], args.images)
    ):
        data = values.read_labelled(
            args, spec, args.inputs[0], command="adversarial", unmapped_folders="fail"
        )
    else:
        data = open_images(args.inputs)
    with bar:
        result = run_adversarial(model, spec, data, args.out, settings)
    summary, rate = result.summary, result.summary["success_rate"]
    text = (
        f"attacked {len(summary['images'])} image(s) with {args.attack.upper()} at eps "
        f"{args.eps * 255:g}/255"
    )
    if rate is not None:
        text += f": success {100 * rate:.0f}% (8-bit {100 * summary['success_rate_8bit']:.0f}%)"
    if summary["already_target"]:
        text += f" ({summary['already_target']} image(s) already the target class, not counted)"
    text += f"; files in {args.out}/"
    if result.errors:
        text += f"; {len(result.errors)} skipped (see stderr and adversarial.json)"
    echo(text)
    return 1 if result.errors else 0

"""``camscope explain DIR --format parquet``: the data-set options of ``explain`` and their run.

``explain`` registers these options with :func:`add_dataset_arguments` and hands a run with
``--format parquet`` to :func:`run_dataset`, which turns the options into a
:class:`camscope.batch.DatasetJob` (no argparse past this module).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ._common import (
    echo,
    methods_within_budget,
    non_negative_float,
    non_negative_int,
    parse_method_options,
    parse_methods,
    positive_int,
    split_list,
    warn,
)
from ._model import ExplainMode, ModelOptions, PreprocessingOptions, apply_preprocessing

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models import ModelSpec

_DESCRIPTION = """\
With --format parquet, explain takes one folder (every image below it, ids = relative paths) or
one list (LIST.csv with a header, or LIST.parquet: a 'path' column and an optional 'id' column)
and writes Parquet shards OUT/maps-*.parquet (one row per image, layer, method and target: label,
probability, top-5, the raw map as float16), errors.parquet and summary.json; committed exactly
once, so --resume after any interruption finishes the job. --batch-size, --threads and
--decode-workers are measured on the first batches unless given.
Read the maps back with camscope.batch.open_maps(OUT) or `camscope maps export`. See docs/scale.md.
"""


_PNG_ONLY = (
    "save_npy",
    "npy_size",
    "max_side",
    "no_grid",
    "no_overlays",
    "image_format",
    "class_scale",
)


class _DefaultInt(int):
    """An int default that can be told apart from the same number typed by the user."""


def map_size(text: str) -> tuple[int, int]:
    """argparse type: ``H,W`` (or one number for a square), both >= 1."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W (e.g. 56,56) or one size, got {text!r}")
    return numbers[0], numbers[1]


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--format`` and the data-set options on ``explain``'s parser."""
    group = parser.add_argument_group("data-set scale (--format parquet)", _DESCRIPTION)
    actions: list[argparse.Action] = []

    def add(*names: str, **options: Any) -> None:
        actions.append(group.add_argument(*names, **options))

    add(
        "--format",
        choices=("png", "parquet"),
        default="png",
        help="png: pictures per image (default); parquet: a resumable job into Parquet shards",
    )
    add("--resume", action="store_true", help="continue the job in --out, skipping committed ids")
    add("--backend", choices=("local", "ray"), default="local", help="where to run (default local)")
    add(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster: 'auto' (the one `ray start` made here), ray://HOST:10001, or none to "
        "start a local Ray instance",
    )
    add("--num-workers", type=positive_int, default=1, metavar="N", help="Ray model actors (1)")
    add(
        "--gpus-per-worker",
        type=non_negative_float,
        default=0.0,
        metavar="G",
        help="GPUs per Ray actor, fractions allowed (0)",
    )
    add(
        "--cpus-per-worker",
        type=non_negative_float,
        default=1.0,
        metavar="C",
        help="CPUs per Ray actor, also its torch threads (1)",
    )
    add(
        "--decode-workers",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="processes decoding images beside the model (local; default: measured on the "
        "first batches, see docs/scale.md)",
    )
    add(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch threads of the model (local; default: measured on the first batches)",
    )
    add(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="the forward pass under autocast (bf16; fp16 on a CUDA GPU); the maps are computed "
        "in float32 either way (default fp32: see docs/scale.md for speed and agreement)",
    )
    add(
        "--compile",
        action="store_true",
        help="torch.compile the model's trunk before the explained layer (pays off on long "
        "jobs: compiling takes tens of seconds)",
    )
    add(
        "--shard-size",
        type=positive_int,
        default=1024,
        metavar="N",
        help="images per committed shard (1024); smaller loses less work when killed",
    )
    add(
        "--map-size",
        type=map_size,
        default=None,
        metavar="H,W",
        help="store maps resized to H,W (default: the layer's own resolution)",
    )
    add("--save-png", action="store_true", help="also write overlays to OUT/png/")
    add(
        "--save-boxes",
        action="store_true",
        help="add each map's WSOL box (15%% of the maximum, largest segment), in image pixels",
    )
    add("--save-masks", action="store_true", help="add each map's binary WSOL mask (weak labels)")
    # The picture options of --format png, with their defaults: a data-set job refuses them
    # rather than ignore them (its overlays are --save-png's, its maps are in the shards).
    parser.set_defaults(_png_only={dest: parser.get_default(dest) for dest in _PNG_ONLY})
    parser.set_defaults(
        _parquet_only={action.dest: action.default for action in actions if action.dest != "format"}
    )
    default = parser.get_default("batch_size")
    if isinstance(default, int):
        parser.set_defaults(batch_size=_DefaultInt(default))


def wants_dataset(args: argparse.Namespace) -> bool:
    """Whether ``explain`` runs a data-set job; the data-set options without ``--format parquet``
    are a usage error rather than ignored."""
    if getattr(args, "format", "png") == "parquet":
        return True
    for dest, default in getattr(args, "_parquet_only", {}).items():
        if getattr(args, dest, default) != default:
            option = "--" + dest.replace("_", "-")
            raise UsageError(f"{option} needs --format parquet (a data-set job; see docs/scale.md)")
    return False


def run_dataset(args: argparse.Namespace) -> int:
    """``explain --format parquet``: build the job, run it, report; 0 or 1 (some inputs failed)."""
    from ..batch.job import ModelRecipe
    from ..data.lists import require_pyarrow
    from ..outputs import output_lock

    require_pyarrow()
    images = list(args.images)
    if len(images) != 1:
        raise UsageError(
            "--format parquet takes one folder or list file (DIR, LIST.csv or LIST.parquet); "
            f"got {len(images)} inputs"
        )
    for dest, default in getattr(args, "_png_only", {}).items():
        if getattr(args, dest, default) != default:
            option = "--" + dest.replace("_", "-")
            raise UsageError(
                f"{option} is for --format png; a data-set job keeps its maps in the Parquet "
                "shards (overlays with --save-png, or `camscope maps export`)"
            )
    if args.backend == "local" and (
        args.ray_address is not None or args.num_workers != 1 or args.gpus_per_worker
    ):
        raise UsageError("--ray-address, --num-workers and --gpus-per-worker need --backend ray")
    methods = parse_methods(args.method)
    model_options = ModelOptions.from_args(args)
    mode = ExplainMode.from_args(args)
    recipe = ModelRecipe(
        name=model_options.name,
        weights=None if model_options.weights is None else str(model_options.weights),
        trust_checkpoint=model_options.trust_checkpoint,
        random_init=model_options.random_init,
        device=model_options.device,
        keep_mode=model_options.keep_mode,
    )
    with output_lock(args.out, "camscope explain"):  # a busy --out is said before the model loads
        return _run_dataset(args, images[0], methods, recipe, mode)


def _run_dataset(
    args: argparse.Namespace, source: str, methods: list[str], recipe: Any, mode: ExplainMode
) -> int:
    from ..batch.job import DatasetJob, RayOptions
    from ..batch.pipeline import run_dataset_job
    from ..data.classes import parse_target

    model, spec, device = recipe.load()
    spec, notes = apply_preprocessing(model, spec, PreprocessingOptions.from_args(args))
    for note in notes:
        warn(f"camscope explain: {note}")
    recipe = replace(recipe, spec=spec)  # the Ray actors preprocess with the same spec
    loaded = (model, spec, device)
    target = parse_target(args.target, spec.class_names, model=spec.name, what="--target")
    method_options = parse_method_options(getattr(args, "option", None))
    layers = tuple(split_list(args.layer)) or ("auto",)
    methods = _within_budget(args, methods, loaded, layers, target, method_options, mode)
    batch_size = None if isinstance(args.batch_size, _DefaultInt) else int(args.batch_size)
    job = DatasetJob(
        source=source,
        out=Path(args.out),
        model=recipe,
        methods=tuple(methods),
        layers=layers,
        target=target,
        batch_size=batch_size,
        shard_size=args.shard_size,
        map_size=args.map_size,
        save_png=bool(args.save_png),
        save_boxes=bool(args.save_boxes),
        save_masks=bool(args.save_masks),
        colormap=getattr(args, "colormap", "inferno"),
        alpha=getattr(args, "alpha", 0.5),
        max_pixels=getattr(args, "max_pixels", None),
        timeout=getattr(args, "timeout", None),
        window=getattr(args, "window", None),
        decode_workers=args.decode_workers,
        torch_threads=args.threads,
        precision=args.precision,
        compile=bool(args.compile),
        aug_smooth=bool(getattr(args, "aug_smooth", False)),
        eigen_smooth=bool(getattr(args, "eigen_smooth", False)),
        method_options=method_options,
        mode="as-is" if mode.as_is else "eval",
        multilabel=mode.multilabel,
        resume=bool(args.resume),
        backend=args.backend,
        ray=RayOptions(
            address=args.ray_address,
            num_workers=args.num_workers,
            gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker or 1.0,
        ),
    )
    if job.backend == "ray" and not getattr(args, "verbose", 0):
        _quiet_ray_data()
    if job.save_png:
        from .. import viz

        viz.check_colormap(job.colormap)
    result = run_dataset_job(job, progress=True, loaded=(loaded[0], loaded[1]))
    echo(_report(result.summary, result.out))
    return result.exit_code


def _within_budget(
    args: argparse.Namespace,
    methods: list[str],
    loaded: tuple[nn.Module, ModelSpec, torch.device],
    layers: tuple[str, ...],
    target: str | int,
    method_options: dict[str, Any],
    mode: ExplainMode,
) -> list[str]:
    """``--method all`` under the pass budget, as ``explain`` without ``--format parquet``."""
    import torch

    from ..core.layers import resolve_layers
    from ..core.targets import parse_topk
    from ..io import model_channels

    model, spec, device = loaded
    dummy = torch.zeros(1, model_channels(spec), *spec.input_size, device=device)
    layer_spec = layers[0] if len(layers) == 1 else list(layers)
    names = [name for name, _ in resolve_layers(model, layer_spec, dummy)]
    choice = methods_within_budget(
        args.method,
        methods,
        model,
        names,
        dummy,
        targets_per_image=parse_topk(target) or 1 if isinstance(target, str) else 1,
        method_options=method_options,
        allow_slow=mode.allow_slow,
        budget=mode.pass_budget,
        aug_smooth=bool(getattr(args, "aug_smooth", False)),
    )
    for name, why in choice.left_out.items():
        warn(f"camscope explain: left out {name}: {why}")
    for note in choice.notes:
        warn(f"camscope explain: {note}")
    return choice.methods


def _quiet_ray_data() -> None:
    """Ray Data logs every dataset's plan and progress at INFO on stderr; the job draws its own
    progress bar, so without ``-v`` only Ray Data's warnings and errors are shown."""
    import logging

    import ray.data  # noqa: F401  (configures Ray Data's loggers, which this then adjusts)

    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _report(summary: dict[str, Any], out: Path) -> str:
    counts, run = summary["counts"], summary["this_run"]
    text = (
        f"explained {counts['explained']} of {counts['inputs']} input(s) with "
        f"{', '.join(summary['methods'])}: {counts['rows']} row(s) in {counts['shards']} "
        f"shard(s) in {out}/"
    )
    if run["skipped_as_committed"]:
        text += f" ({run['skipped_as_committed']} were already committed)"
    if run["images_per_second"]:
        text += f"; {run['images_per_second']:.1f} images/s"
    if counts["failed"]:
        text += f"; {counts['failed']} failed (see {out}/errors.parquet)"
    return text

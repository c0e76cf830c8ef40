"""``camscope explain DIR --format parquet``: the data-set options of ``explain`` and their run.

``explain`` registers these options with :func:`add_dataset_arguments` and hands a run with
``--format parquet`` to :func:`run_dataset`, which turns the options into a
:class:`camscope.batch.DatasetJob` (no argparse past this module); the job itself settles the
methods under the pass budget, the target and the torch threads, as for library callers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import options, values
from ._common import echo, warn

_DESCRIPTION = """\
With --format parquet, explain takes one folder (every image below it, ids = relative paths) or
one list (LIST.csv with a header, or LIST.parquet: a 'path' column and an optional 'id' column)
and writes Parquet shards OUT/maps-*.parquet (one row per image, layer, method and target: label,
probability, top-5, the raw map as float16), errors.parquet and summary.json; committed exactly
once, so --resume after any interruption finishes the job. --batch-size, --threads and
--decode-workers are measured on the first batches unless given.
Read the maps back with camscope.batch.open_maps(OUT) or `camscope maps export`. See docs/scale.md.
"""


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--format`` and the data-set options on ``explain``'s parser."""
    group = parser.add_argument_group("data-set scale (--format parquet)", _DESCRIPTION)
    actions: list[argparse.Action] = []

    def add(*names: str, **kw: Any) -> None:
        actions.append(group.add_argument(*names, **kw))

    add(
        "--format",
        choices=("png", "parquet"),
        default="png",
        help="png: pictures per image (default); parquet: a resumable job into Parquet shards",
    )
    actions += options.add(
        group, "resume", resume={"help": "continue the job in --out, skipping committed ids"}
    )
    add(
        "--refresh-changed",
        action="store_true",
        help="with --resume: explain again the committed inputs whose file or path changed "
        "since (their old rows are removed) instead of refusing the resume",
    )
    add("--backend", choices=("local", "ray"), default="local", help="where to run (default local)")
    add(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster: 'auto' (the one `ray start` made here), ray://HOST:10001, or none to "
        "start a local Ray instance",
    )
    add(
        "--num-workers",
        type=options.positive_int,
        default=1,
        metavar="N",
        help="Ray model actors (1)",
    )
    add(
        "--gpus-per-worker",
        type=options.non_negative_float,
        default=0.0,
        metavar="G",
        help="GPUs per Ray actor, fractions allowed (0)",
    )
    add(
        "--cpus-per-worker",
        type=options.non_negative_float,
        default=1.0,
        metavar="C",
        help="CPUs per Ray actor, also its torch threads (1)",
    )
    add(
        "--decode-workers",
        type=options.non_negative_int,
        default=None,
        metavar="N",
        help="processes decoding images beside the model (local; default: measured on the "
        "first batches, see docs/scale.md)",
    )
    add(
        "--threads",
        type=options.positive_int,
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
        type=options.positive_int,
        default=1024,
        metavar="N",
        help="images per committed shard (1024); smaller loses less work when killed",
    )
    add(
        "--map-size",
        type=options.pixel_size,
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
    parser.set_defaults(
        _parquet_only={action.dest: action.default for action in actions if action.dest != "format"}
    )


def wants_dataset(args: argparse.Namespace) -> bool:
    """Whether ``explain`` runs a data-set job; the data-set options without ``--format parquet``
    are a usage error rather than ignored."""
    if getattr(args, "format", "png") == "parquet":
        return True
    option = changed(args, "_parquet_only")
    if option:
        raise UsageError(f"{option} needs --format parquet (a data-set job; see docs/scale.md)")
    return False


def changed(args: argparse.Namespace, defaults: str) -> str | None:
    """The first option of the table ``defaults`` (``_png_only``, ``_parquet_only``: dest ->
    default, set by the parser) that the user changed, as its flag."""
    for dest, default in getattr(args, defaults, {}).items():
        if getattr(args, dest, default) != default:
            return "--" + dest.replace("_", "-")
    return None


def run_dataset(args: argparse.Namespace) -> int:
    """``explain --format parquet``: build the job, run it, report; 0 or 1 (some inputs failed)."""
    from ..batch.job import DatasetJob, RayOptions
    from ..batch.pipeline import run_dataset_job
    from ..data.lists import require_pyarrow

    require_pyarrow()
    if len(args.images) != 1:
        raise UsageError(
            "--format parquet takes one folder or list file (DIR, LIST.csv or LIST.parquet); "
            f"got {len(args.images)} inputs"
        )
    option = changed(args, "_png_only")
    if option:
        raise UsageError(
            f"{option} is for --format png; a data-set job keeps its maps in the Parquet "
            "shards (overlays with --save-png, or `camscope maps export`)"
        )
    if args.backend == "local" and (
        args.ray_address is not None or args.num_workers != 1 or args.gpus_per_worker
    ):
        raise UsageError("--ray-address, --num-workers and --gpus-per-worker need --backend ray")
    if args.save_png:
        from .. import viz

        viz.check_colormap(args.colormap)
    job = DatasetJob(
        source=args.images[0],
        model=values.model_recipe(args),
        methods=tuple(values.split_list(args.method)),
        layers=tuple(values.split_list(args.layer)) or ("auto",),
        torch_threads=args.threads,
        **values.explain_settings(args),
        # batch_size None: measured on the first batches (batch.tuning)
        **values.same_named(
            args,
            "out target batch_size shard_size map_size save_png save_boxes save_masks colormap "
            "alpha max_pixels timeout window decode_workers precision compile resume "
            "refresh_changed backend",
        ),
        ray=RayOptions(
            address=args.ray_address,
            num_workers=args.num_workers,
            gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker or 1.0,
        ),
        task=values.task_request(args),
    )
    if job.backend == "ray" and not getattr(args, "verbose", 0):
        _quiet_ray_data()
    result = run_dataset_job(
        job,
        progress=not args.no_progress,
        notes=lambda text: warn(f"camscope explain: {text}"),
        hints="cli",
    )
    echo(_report(result.summary, result.out))
    return result.exit_code


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
    if run.get("refreshed"):
        text += f"; {run['refreshed']} changed input(s) explained again"
    if counts.get("not_listed"):
        text += f"; {counts['not_listed']} id(s) no longer in the input keep their rows"
    if run["images_per_second"]:
        text += f"; {run['images_per_second']:.1f} images/s"
    if counts["failed"]:
        text += f"; {counts['failed']} failed (see {out}/errors.parquet)"
    return text

"""``camscope maps``: look into the output of ``camscope explain DIR --format parquet``.

* ``camscope maps info OUT``: the job's settings and counts;
* ``camscope maps export OUT --png --ids ID [ID ...]``: overlays of some images, drawn from the
  stored maps over the original images (found through the paths the job read them from, or
  ``--root`` when the data set has moved); ``--npy`` writes the raw maps instead or as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import options, values
from ._common import command_parser, echo, warn

_HELP = "read the maps of `explain --format parquet`: info, export overlays"
_EPILOG = """\
examples:
  camscope maps info out/maps
  camscope maps export out/maps --png --ids cats/001.jpg cats/002.jpg --out out/picked
  camscope maps export out/maps --png --ids-file failures.txt --method gradcam --root /new/place
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "maps", _HELP, __doc__, _EPILOG)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    info = actions.add_parser("info", help="settings and counts of a job's output")
    info.add_argument("dir", type=Path, metavar="OUT", help="the job's output folder")
    export = actions.add_parser("export", help="overlays (--png) or raw maps (--npy) of some ids")
    add = export.add_argument
    add("dir", type=Path, metavar="OUT", help="the job's output folder")
    add("--ids", nargs="+", default=[], metavar="ID", help="ids to export")
    add("--ids-file", type=Path, default=None, metavar="FILE", help="more ids, one per line")
    add("--png", action="store_true", help="overlay PNGs at the image's size")
    add("--npy", action="store_true", help="raw maps as float32 .npy")
    options.add(
        export,
        "method",
        "out",
        method={"default": None, "help": "only these methods (comma list; default: every one)"},
        out={"help": "where (default OUT/export)"},
    )
    add(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="find images as ROOT/ID instead of the paths the job read",
    )
    options.add(export, "colormap", "alpha")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..batch.maps import open_maps

    store = open_maps(args.dir)
    if args.action == "info":
        return _info(store)
    return _export(store, args)


def _info(store: Any) -> int:
    settings, summary = store.settings, store.summary
    echo(f"{store.out}: {len(store)} image(s) with maps, {len(store.errors())} failed")
    for key in ("input", "model", "layers", "methods", "target", "map_size"):
        echo(f"  {key}: {settings.get(key)}")
    if summary:
        run = summary.get("this_run", {})
        echo(
            f"  last run: {run.get('inputs')} input(s) in {run.get('seconds')} s "
            f"({run.get('images_per_second')} images/s, backend {summary.get('backend')})"
        )
    return 0


def _export(store: Any, args: argparse.Namespace) -> int:
    from ..batch.export import export_maps

    ids = list(args.ids)
    if args.ids_file is not None:
        try:
            text = args.ids_file.read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"cannot read --ids-file {str(args.ids_file)!r}: {err}") from None
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    report = export_maps(
        store,
        ids,
        args.out or Path(args.dir) / "export",
        png=args.png,
        npy=args.npy,
        methods=values.split_list(args.method) if args.method else None,
        root=args.root,
        colormap=args.colormap,
        alpha=args.alpha,
        on_skip=lambda id_, why: warn(f"camscope maps export: skipped {id_}: {why}"),
    )
    asked = len(report.done) + len(report.failed)
    text = (
        f"wrote {report.written} file(s) for {len(report.done)} of {asked} id(s) to "
        f"{report.out}/ (listed in {report.index.name})"
    )
    if report.replaced:
        text += f"; {report.replaced} of them replaced the files of an earlier export"
    echo(text)
    return 1 if report.failed else 0

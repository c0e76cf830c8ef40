"""``camscope study summarize DIR``: the results of a human study served by ``camscope serve
--study``: per method, the accuracy (class discrimination) or the preference for the first model
(trust), each with a 95% Wilson score interval, from ``DIR/answers.csv`` and ``DIR/study.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..outputs import percent
from . import options
from ._common import command_parser, echo, format_table

_EPILOG = """\
examples:
  camscope study summarize out/study1
  camscope study summarize out/trust --json > trust.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers, "study", "summarise a human study (camscope serve --study)", __doc__, _EPILOG
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    actions.required = True
    summarize = actions.add_parser(
        "summarize", help="per-method accuracy or preference with 95%% Wilson intervals"
    )
    summarize.add_argument("folder", type=Path, metavar="DIR", help="the study folder (--out)")
    options.add(summarize, "json")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..serve.study.answers import AnswerLog, summarize

    plan_path = args.folder / "study.json"
    if not plan_path.is_file():
        raise UsageError(f"{args.folder} holds no study.json; pass the --out folder of a study")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    rows = AnswerLog(args.folder / "answers.csv").rows
    kind, models = plan["kind"], plan["models"]
    table = summarize(kind, rows, models)
    if args.json:
        echo(
            json.dumps(
                {"kind": kind, "models": models, "answers": len(rows), "methods": table}, indent=2
            )
        )
        return 0
    people = len({r["participant"] for r in rows})
    echo(f"{kind} study in {args.folder}: {len(rows)} answers from {people} participant(s)")
    if not rows:
        return 0
    if kind == "class-discrimination":
        head = ["method", "answers", "correct", "accuracy"]
        keys: tuple[str, ...] = ("n", "correct", "accuracy")
    else:
        echo(f"a = {models[0]}, b = {models[1]}; share of decided answers preferring a")
        head = ["method", "answers", "prefer a", "prefer b", "same", "share a"]
        keys = ("n", "prefer_a", "prefer_b", "same", "share_a")
    head.append("95% interval (Wilson)")
    body = []
    for e in table:
        share, low, high = (percent(e[k], missing="-") for k in (keys[-1], "ci_low", "ci_high"))
        body.append([e["method"], *(e[k] for k in keys[:-1]), share, f"{low} - {high}"])
    echo(format_table(head, body))
    return 0

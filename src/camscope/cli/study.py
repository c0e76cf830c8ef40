"""``camscope study summarize DIR``: the results of a human study served by ``camscope serve
--study``: per method, the accuracy (class discrimination) or the preference for the first model
(trust), each with a 95% Wilson score interval, from ``DIR/answers.csv`` and ``DIR/study.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import options
from ._common import echo, format_table

_EPILOG = """\
examples:
  camscope study summarize out/study1
  camscope study summarize out/trust --json > trust.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "study",
        help="summarise a human study (camscope serve --study)",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    actions.required = True
    summarize = actions.add_parser(
        "summarize", help="per-method accuracy or preference with 95%% Wilson intervals"
    )
    summarize.add_argument("folder", type=Path, metavar="DIR", help="the study folder (--out)")
    options.add(summarize, "json")
    parser.set_defaults(run=run)
    return parser


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


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
        head = ["method", "answers", "correct", "accuracy", "95% interval (Wilson)"]
        body = [
            [
                e["method"],
                e["n"],
                e["correct"],
                _percent(e["accuracy"]),
                f"{_percent(e['ci_low'])} - {_percent(e['ci_high'])}",
            ]
            for e in table
        ]
    else:
        echo(f"a = {models[0]}, b = {models[1]}; share of decided answers preferring a")
        head = [
            "method",
            "answers",
            "prefer a",
            "prefer b",
            "same",
            "share a",
            "95% interval (Wilson)",
        ]
        body = [
            [
                e["method"],
                e["n"],
                e["prefer_a"],
                e["prefer_b"],
                e["same"],
                _percent(e["share_a"]),
                f"{_percent(e['ci_low'])} - {_percent(e['ci_high'])}",
            ]
            for e in table
        ]
    echo(format_table(head, body))
    return 0

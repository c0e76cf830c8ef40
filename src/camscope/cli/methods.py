"""``camscope methods``: the registered CAM methods as a table (or JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import echo, format_table


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "methods",
        help="list the CAM methods camscope knows",
        description="List every registered CAM method with what it needs and where it comes from.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    return show_methods(as_json=bool(args.json))


def show_methods(*, as_json: bool = False) -> int:
    """Print the registry; returns the exit code."""
    from ..methods import method_specs

    specs = method_specs()
    if as_json:
        records = [
            {
                "name": s.name,
                "needs_gradients": s.needs_gradients,
                "needs_guided_gradients": s.needs_guided_gradients,
                "class_specific": s.class_specific,
                "paper": s.paper,
                "summary": s.summary,
            }
            for s in specs
        ]
        echo(json.dumps(records, indent=2))
        return 0
    rows = []
    for s in specs:
        grads = "yes" if s.needs_gradients else "no"
        if s.needs_guided_gradients:
            grads += " + guided"
        rows.append([s.name, grads, "yes" if s.class_specific else "no", s.paper, s.summary])
    echo(format_table(["method", "gradients", "class-specific", "paper", "summary"], rows))
    return 0

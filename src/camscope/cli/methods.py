"""``camscope methods``: the registered CAM methods as a table, JSON or the Markdown block of
``docs/methods.md`` (all three made from the registry, so they cannot disagree)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import echo, format_table


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "methods",
        help="list the CAM methods camscope knows",
        description="List every registered CAM method with what it needs, what it costs and "
        "where it comes from.",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument(
        "--markdown",
        action="store_true",
        help="print the Markdown table of docs/methods.md (the docs are generated from it)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the registry; returns the exit code."""
    from ..methods import method_specs
    from ..methods.table import COLUMNS, markdown_table, method_rows

    if args.markdown:
        echo(markdown_table().rstrip("\n"))
        return 0
    rows = method_rows()
    if args.json:
        records = [
            {
                "name": s.name,
                "family": s.family,
                "needs_gradients": s.needs_gradients,
                "needs_guided_gradients": s.needs_guided_gradients,
                "uses_gradients": s.uses_gradients,
                "class_specific": s.class_specific,
                "class_specificity": s.class_specificity,
                "passes_per_image": s.passes_text,
                "paper": s.paper,
                "summary": s.summary,
            }
            for s in method_specs()
        ]
        echo(json.dumps(records, indent=2))
        return 0
    echo(format_table(COLUMNS, [[row[c] for c in COLUMNS] for row in rows]))
    return 0

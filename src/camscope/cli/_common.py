"""What the commands share beyond their options (:mod:`camscope.cli.options`): their parser
(:func:`command_parser`), one line to stdout (:func:`echo`) or stderr (:func:`warn`), and
plain-text tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def command_parser(
    subparsers: Any, name: str, help: str, description: str | None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of command ``name``; its description and epilog keep their own line breaks."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def echo(text: str = "") -> None:
    """Write one line of command output to stdout."""
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    """Write one line to stderr (per-item problems; the command goes on)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned plain-text table with a dashed rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

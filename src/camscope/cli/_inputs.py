"""Options of the commands that read images (``--timeout``, ``--window``).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import math

DEFAULT_TIMEOUT = 60.0  # same as camscope.io.DEFAULT_DEADLINE (kept import-free here)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``--timeout`` (URL downloads) and ``--window`` (DICOM/NIfTI)."""
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        metavar="S",
        help=f"seconds one URL download may take in all (default {DEFAULT_TIMEOUT:g}; a silent "
        "server is given up after at most 10 s)",
    )
    parser.add_argument(
        "--window",
        type=window_pair,
        default=None,
        metavar="C,W",
        help="window centre and width for DICOM/NIfTI values, e.g. 40,400 for CT soft tissue "
        "(default: the file's own window, else the values' min..max)",
    )


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def window_pair(text: str) -> tuple[float, float]:
    """argparse type: ``CENTRE,WIDTH`` with a positive finite width."""
    parts = [p.strip() for p in text.split(",")]
    try:
        centre, width = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CENTRE,WIDTH such as 40,400; got {text!r}"
        ) from None
    if not (math.isfinite(centre) and math.isfinite(width)) or width <= 0:
        raise argparse.ArgumentTypeError(
            f"the window width must be a positive number; got {text!r}"
        )
    return centre, width

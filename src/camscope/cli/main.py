"""The ``camscope`` command: registers the subcommands and turns errors into exit codes.

Exit codes: 0 all good; 1 some images failed (each reported on stderr and in ``summary.json``) or an
unexpected internal error; 2 a usage error (bad option, unknown method/layer/model/colormap, bad
target, unreadable checkpoint): a one-line message on stderr, no traceback; 130 interrupted
(Ctrl-C); 141 the reader of stdout went away (``camscope layers | head``), quietly.

Building the parser imports no torch, so ``camscope --help`` is instant; each command imports the
model stack inside its ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..allocator import tune_allocator
from ..errors import CamscopeError

log = logging.getLogger("camscope.cli")

# the command modules, in the order of `camscope --help`; each has add_parser and run
_COMMANDS = [
    "explain",
    "methods",
    "layers",
    "predict",
    "evaluate",
    "maps",
    "failures",
    "adversarial",
    "serve",
    "study",
    "train",
    "audit",
    "embed",
    "bias_experiment",
]

_EPILOG = """\
examples:
  camscope explain                               # the demo images, Grad-CAM, out/explain/
  camscope explain cat.jpg --method gradcam,gradcam++,layercam --target top3
  camscope methods                               # every CAM method camscope knows
  camscope layers resnet50                       # candidate layers and the automatic choice
  camscope predict photos/ --topk 5
  camscope serve                                 # the web viewer on http://127.0.0.1:8000/
  camscope train --data builtin:1200 --arch gapnet --image-size 32 --out runs/gap
  camscope explain photos/ --format parquet --out out/maps   # a whole data set, resumable
  camscope maps export out/maps --png --ids cats/001.jpg
  camscope failures --data pets/                 # explain every mistake on labelled folders
  camscope adversarial --attack pgd --eps 2/255  # attack the demo images, compare the maps
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command module, carried out by its ``run``)."""
    parser = argparse.ArgumentParser(
        prog="camscope",
        description="Class Activation Maps for image classifiers: one pass, many methods.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"camscope {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log messages on stderr (-v: info, -vv: debug with tracebacks)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    subparsers.required = True
    for name in _COMMANDS:
        command = importlib.import_module(f"{__package__}.{name}")
        sub = command.add_parser(subparsers)
        sub.set_defaults(run=command.run)
        sub.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="more log messages on stderr (-v: info, -vv: debug)",
        )
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes: a handler that kept the stream of
    its first call would write to a closed one after ``sys.stderr`` was swapped (pytest's capture
    between tests, a caller redirecting ``main()``'s output)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _Once(logging.Filter):
    """Lets each warning text through once per command: a warning the library logs for every
    batch (or every augmented copy) is said once."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = f"{record.name}:{record.getMessage()}"
        if text in self.said:
            return False
        self.said.add(text)
        return True


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("camscope")
    logger.setLevel(level)
    for handler in logger.handlers:
        if getattr(handler, "_camscope_cli", False):
            handler.filters = [_Once()]  # a new command: nothing said yet
            return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Once())
    handler._camscope_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``camscope`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, or an argparse usage error (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    verbosity = int(getattr(args, "verbose", 0) or 0)
    _setup_logging(verbosity)
    if verbosity <= 0:
        # torch deprecates TorchScript, which the perturbation methods' fast copy is built on:
        # a note for camscope's developers, not for someone running a command (-v shows it)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit\.")
    tune_allocator()  # this process is ours: keep activation buffers instead of re-faulting them
    try:
        return int(args.run(args))
    except CamscopeError as err:
        sys.stderr.write(f"camscope {args.command}: error: {err}\n")
        log.debug("details", exc_info=True)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("camscope: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (`camscope layers | head`): not an error of ours
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command stopped by a closed pipe
    except Exception as err:  # a bug, not a bad input: say so briefly, trace with -vv
        sys.stderr.write(
            f"camscope {args.command}: internal error: {type(err).__name__}: {err} "
            "(rerun with -vv for the traceback and please report it)\n"
        )
        log.debug("traceback", exc_info=True)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (tests capture it): nothing will flush
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

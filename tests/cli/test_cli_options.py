"""One vocabulary: every option several commands take is declared once in
``camscope.cli.options`` and every subcommand's parser spells, types and defaults it as declared
(issue 20, "Options once"), so a new command cannot drift."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest
from cli_helpers import REPO

from camscope.cli import main as cli
from camscope.cli.options import OPTIONS, add, pixel_size


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, Any]:
    """Every (sub)command's parser, by its name (``maps export``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(subcommands(sub, f"{prefix}{name} "))
    return found


COMMANDS = subcommands(cli.build_parser())
SHARED_FLAGS = {flag for option in OPTIONS.values() for flag in option.flags}


def declared(name: str) -> argparse.Action:
    """The action the declaration alone makes."""
    option = OPTIONS[name]
    return argparse.ArgumentParser().add_argument(
        *option.flags, dest=option.dest or name, **option.kwargs
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_shared_option_is_the_declared_one(command: str) -> None:
    checked = 0
    for action in COMMANDS[command]._actions:
        if not set(action.option_strings) & SHARED_FLAGS:
            continue  # the command's own option
        names = [
            n for n, o in OPTIONS.items()
            if set(o.flags) == set(action.option_strings) and (o.dest or n) == action.dest
        ]  # fmt: skip
        assert names, f"{command}: {action.option_strings} is spelled unlike its declaration"
        # --model is one model, or several (serve's repeatable --model): the same kind of action
        name = next((n for n in names if type(declared(n)) is type(action)), names[0])
        option, reference = OPTIONS[name], declared(name)
        assert action.option_strings == reference.option_strings  # the same order in the help
        assert type(action) is type(reference), f"{command} {action.option_strings}: action"
        assert action.type is reference.type, f"{command} {action.option_strings}: type"
        assert action.nargs == reference.nargs and action.const == reference.const
        if "choices" not in option.per_command:
            assert action.choices == reference.choices, f"{command} {action.option_strings}"
        if command == "train":  # options left out keep the stored values of a resumed run
            assert action.default is None, f"train {action.option_strings}: default"
        elif "default" not in option.per_command:
            assert action.default == reference.default, f"{command} {action.option_strings}"
        if "required" not in option.per_command:
            assert action.required == reference.required
        checked += 1
    assert checked or command in ("methods", "maps", "maps info", "study"), command


def test_the_same_concept_has_the_same_flags_everywhere() -> None:
    takes = {
        name: sorted(c for c, p in COMMANDS.items() if any(a.dest == dest for a in p._actions))
        for name, dest in (("method", "method"), ("progress", "no_progress"), ("out", "out"))
    }
    assert takes["method"] == [
        "adversarial", "audit", "bias-experiment", "evaluate", "explain", "failures",
        "maps export", "serve",
    ]  # fmt: skip
    # every command that draws a progress bar can be told not to (explain lacked it: issue 21)
    assert takes["progress"] == [
        "adversarial", "audit", "bias-experiment", "embed", "evaluate", "explain", "failures",
        "train",
    ]  # fmt: skip
    for command in takes["method"]:
        args = cli.build_parser().parse_args([*command.split(), *_required(command), "-m", "a,b"])
        assert args.method == "a,b", command
        args = cli.build_parser().parse_args(
            [*command.split(), *_required(command), "--methods", "c"]
        )
        assert args.method == "c", command
    for command in ("explain", "evaluate", "failures", "adversarial", "audit", "embed", "serve"):
        args = cli.build_parser().parse_args([*command.split(), *_required(command), "-l", "x"])
        assert args.layer == ["x"], command


def _required(command: str) -> list[str]:
    return {
        "audit": ["--data", "d"],
        "failures": ["--data", "d"],
        "embed": ["--data", "d"],
        "maps export": ["OUT"],
    }.get(command, [])


def test_a_command_cannot_give_a_shared_option_its_own_type() -> None:
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="may not set"):
        add(parser, "batch_size", batch_size={"type": float})
    with pytest.raises(ValueError, match="not added"):
        add(parser, "out", layer={"help": "x"})


def test_every_help_page_formats() -> None:
    """``camscope study --help`` failed on the '%' of its help line."""
    code = (
        "import camscope.cli.main as m\n"
        f"for argv in {[c.split() for c in sorted(COMMANDS)]!r}:\n"
        "    assert m.main([*argv, '--help']) == 0, argv\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--method NAMES, -m NAMES, --methods NAMES" in done.stdout


@pytest.mark.parametrize(
    ("text", "size"),
    [("224", (224, 224)), ("256,320", (256, 320)), ("256x320", (256, 320)), (" 4 , 5 ", (4, 5))],
)
def test_one_size_type_reads_both_grammars_it_replaced(text: str, size: tuple[int, int]) -> None:
    """--input-size's ``H`` / ``H,W`` and --map-size's ``HxW`` (both parse through it)."""
    assert pixel_size(text) == size


@pytest.mark.parametrize("text", ["0", "3,0", "-4", "a,b", "2.5", "1,2,3", ""])
def test_a_size_that_is_no_positive_pixel_count_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected H,W or one size in pixels"):
        pixel_size(text)

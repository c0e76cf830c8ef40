"""The ``camscope`` command, thin on top of the library: one module per command, each with
``add_parser`` (argparse) and ``run`` (plain typed calls of the library); :mod:`.main` registers
them. Nothing here imports torch at module level, so ``camscope --help`` stays fast. The CLI may
import every other room; nothing imports the CLI.
"""

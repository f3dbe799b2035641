"""Entry point of the ``derain`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .. import cpu

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func``
# (a callable taking the parsed arguments and returning the exit code).
COMMANDS = ("run", "video", "models", "eval", "train", "plot", "data", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derain", description="Single-image rain removal.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"derain.cli.{name}").register(subparsers)
    return parser


def _one_line(message, category, filename, lineno, line=None) -> str:
    """derain's own warnings (a smaller tile after running out of memory...) as one line on
    stderr, without the source path and line Python adds for programmers."""
    if category.__module__.startswith("derain."):
        return f"derain: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    cpu.tune()  # the command owns its process; before the sub-commands import torch
    warnings.formatwarning = _one_line
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

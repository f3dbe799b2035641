"""Entry point of the ``derain`` command."""

from __future__ import annotations

import argparse
import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    cpu.tune()  # the command owns its process; before the sub-commands import torch
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

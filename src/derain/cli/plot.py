"""``derain plot RUN_DIR [RUN_DIR ...]``: a training run's loss, validation PSNR and learning rate to a PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a training run's curves to a PNG",
        description=(
            "Draw loss, validation PSNR and learning rate against step from RUN_DIR/log.jsonl. Several "
            "folders are the stages of one training (each started from a checkpoint of the one before, "
            "by model.init), drawn on one step axis."
        ),
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="a folder written by derain train")
    parser.add_argument("-o", "--output", type=Path, help="PNG to write (default LAST_RUN_DIR/curves.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.plot import PlotError, plot_run

    try:
        output = plot_run(args.run_dirs, args.output)
    except PlotError as err:
        print(f"derain plot: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {output}")
    return 0

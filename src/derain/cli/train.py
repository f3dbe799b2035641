"""``derain train CONFIG.yaml [--set key=value ...]`` and ``derain train --resume RUN_DIR``."""

from __future__ import annotations

import argparse
import sys

_TRAIN_EXTRA = ("accelerate", "tensorboard")  # what `pip install 'derain[train]'` adds


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model with a recipe from configs/",
        description=(
            "Train with a YAML recipe. Launch with `accelerate launch -m derain.cli.main train ...` "
            "or `torchrun` for several GPUs or nodes; the recipe's global batch is kept."
        ),
    )
    parser.add_argument("config", nargs="?", help="recipe YAML (e.g. configs/drsformer.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.batch_size=8 --set model.config.dim=8 (repeatable)",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training import ConfigError, TrainingError, train
    from ..training.run_state import CheckpointWriteError

    if (args.config is None) == (args.resume is None):
        print("derain train: give either CONFIG or --resume RUN_DIR", file=sys.stderr)
        return 2
    try:
        run_dir = train(args.resume or args.config, tuple(args.overrides), resume=args.resume is not None)
    except ModuleNotFoundError as err:
        if err.name not in _TRAIN_EXTRA:
            raise
        print(
            f"derain train: needs {err.name}, which the train extra installs: pip install 'derain[train]'",
            file=sys.stderr,
        )
        return 2
    except (ConfigError, TrainingError, CheckpointWriteError, ValueError) as err:
        print(f"derain train: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the run folder or a file in it cannot be written
        print(f"derain train: cannot write {err.filename or 'the run folder'}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"run folder: {run_dir}")
    return 0

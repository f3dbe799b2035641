"""``derain eval``: paper-protocol PSNR/SSIM of a results folder, or NIQE/BRISQUE without clean
images; with ``--model``/``--weights DATA_DIR``, of a model run on a dataset (:func:`derain.evaluate`)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..checkpoint import CheckpointError
from ..data.pairing import PairingError
from ..factory import list_models
from ..inference import AUTO, Deraining, evaluate
from ..inference.api import PROTOCOLS as INFERENCE_PROTOCOLS
from ..metrics.folders import METRICS, evaluate_folders, format_value
from ..metrics.matlab import PROTOCOLS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="PSNR/SSIM as the papers' MATLAB scripts compute them; NIQE/BRISQUE without --clean",
        description=(
            "Evaluate restored images. With --clean: PSNR/SSIM under a paper protocol (rain100: "
            "Rain100L/H, Test100/1200/2800, Rain200L/H, SPA-Data; ddn: DID-Data, DDN-Data). "
            "Without --clean: the no-reference NIQE and BRISQUE."
        ),
    )
    parser.add_argument(
        "data", nargs="?", type=Path, metavar="DATA_DIR",
        help="rainy/clean pairs in any published layout: run --model/--weights on them and score the results",
    )
    parser.add_argument("--restored", type=Path, help="folder of restored images, or a video (instead of DATA_DIR)")
    parser.add_argument("--model", choices=list_models(), help="architecture run on DATA_DIR (default: detected from --weights)")
    parser.add_argument("--weights", type=Path, help="checkpoint run on DATA_DIR (default: the shipped pretrained weights)")
    parser.add_argument(
        "--inference", choices=INFERENCE_PROTOCOLS, default="blended",
        help="on DATA_DIR: derain's blended tiles (default) or the paper's own test procedure",
    )
    parser.add_argument(
        "--tile", type=int,
        help="on DATA_DIR: tile side (default: what free memory holds, at least the model card's; 0: whole images)",
    )
    parser.add_argument("--overlap", type=int, help="on DATA_DIR: pixels shared by tiles (default: the model card's)")
    parser.add_argument("--device", default="auto", help="on DATA_DIR: cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--clean", type=Path, help="folder of clean (ground-truth) images, or a video")
    parser.add_argument(
        "--video", action="store_true",
        help="frame folders are videos: per-frame PSNR/SSIM beside the warping error (flicker) "
        "between consecutive frames; implied when --restored is a file",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="rain100", help="paper protocol (default: rain100)")
    parser.add_argument(
        "--metrics", nargs="+", choices=METRICS, metavar="METRIC",
        help=f"some of {', '.join(METRICS)} (default: psnr ssim with --clean, niqe brisque without)",
    )
    parser.add_argument(
        "--pairing", choices=("stem", "sorted"), default="stem",
        help="pair by file name (default) or by position in the sorted listings, as the official scripts do",
    )
    parser.add_argument(
        "--out", type=Path,
        help="folder for metrics.csv and summary.json (default: a new folder beside --restored, "
        "RESTORED_eval, or eval-DATA in the current folder; numbered, never an earlier one)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _write_csv(path: Path, evaluation) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("name",) + evaluation.metrics)
        for row in evaluation.rows:
            writer.writerow([row["name"]] + [format_value(row[m], 10) for m in evaluation.metrics])


def _print_table(summary: dict, images: int, failures: int) -> None:
    print(f"{'metric':<10}{'mean':>14}{'count':>8}{'no value':>10}")
    for metric, stats in summary.items():
        mean = format_value(stats["mean"], 6 if metric == "warping" else 4) or "no value"
        print(f"{metric:<10}{mean:>14}{stats['count']:>8}{stats['no_value']:>10}")
    print(f"{images} image(s) evaluated, {failures} failed")


def _evaluate(args: argparse.Namespace):
    if (args.data is None) == (args.restored is None):
        raise ValueError("give either DATA_DIR (a model is run on it) or --restored (a folder of results)")
    if args.restored is not None and (args.video or args.restored.is_file()):
        if args.metrics:
            raise ValueError("--metrics chooses among image metrics; a video gets PSNR, SSIM and the warping error")
        try:
            from ..video.flicker import evaluate_video
        except ImportError as err:
            raise ValueError(f"{err.name} is missing for video evaluation; pip install 'derain[video]'") from None
        return evaluate_video(args.restored, args.clean, protocol=args.protocol)
    if args.restored is not None:
        return evaluate_folders(
            args.restored, args.clean, protocol=args.protocol,
            metrics=tuple(args.metrics) if args.metrics else None,
            by=args.pairing, workers=args.workers, progress=not args.no_progress,
        )
    if args.clean is not None:
        raise ValueError("--clean goes with --restored; DATA_DIR holds its own clean images")
    tile = AUTO if args.tile is None else args.tile or None
    derainer = Deraining(args.model, args.weights, tile=tile, overlap=args.overlap, device=args.device, protocol=args.inference)
    metrics = tuple(args.metrics) if args.metrics else ("psnr", "ssim")
    return evaluate(derainer, args.data, metrics=metrics, protocol=args.protocol, progress=not args.no_progress)


GENERIC_NAMES = {"test", "train", "val", "valid", "validation", "input", "testing", "training"}


def fresh_folder(args: argparse.Namespace) -> Path:
    """A new folder for the results: ``RESTORED_eval`` beside the restored images, or
    ``eval-DATA`` in the current folder (the images of DATA_DIR are not written anywhere),
    numbered ``-2``, ``-3``... so that a second evaluation never overwrites the first."""
    evaluated = args.restored if args.restored is not None else args.data
    name = (evaluated if evaluated.name else evaluated.resolve()).name
    if args.restored is not None:
        base = evaluated.parent / f"{Path(name).stem if evaluated.is_file() else name}_eval"
    else:  # Rain200H/test: eval-Rain200H-test rather than eval-test
        parent = evaluated.resolve().parent.name
        base = Path(f"eval-{parent}-{name}" if name.lower() in GENERIC_NAMES and parent else f"eval-{name}")
    number = 1
    while True:
        folder = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            number += 1


def run(args: argparse.Namespace) -> int:
    try:
        evaluation = _evaluate(args)
    except (PairingError, CheckpointError, ValueError) as err:  # VideoError is a ValueError
        print(f"derain eval: {err}", file=sys.stderr)
        return 2
    for name, reason in evaluation.failures:
        print(f"derain eval: {name}: {reason}", file=sys.stderr)
    for name, metric, reason in evaluation.no_value:
        print(f"derain eval: {name}: no {metric} value: {reason}", file=sys.stderr)

    summary = evaluation.summary()
    if args.out is None:
        args.out = fresh_folder(args)
    args.out.mkdir(parents=True, exist_ok=True)
    _write_csv(args.out / "metrics.csv", evaluation)
    record = {
        "restored": str(args.restored) if args.restored else None,
        "clean": str(args.clean) if args.clean else None,
        "data": str(args.data) if args.data else None,
        "model": str(args.weights or args.model or "pretrained") if args.data else None,
        "protocol": args.protocol if args.clean or args.data else None,
        "images": len(evaluation.rows),
        "failed": [{"name": n, "reason": r} for n, r in evaluation.failures],
        "no_value": [{"name": n, "metric": m, "reason": r} for n, m, r in evaluation.no_value],
        # inf/-inf are written as strings: JSON has no infinity.
        "metrics": {
            m: {**s, "mean": s["mean"] if s["mean"] is None or abs(s["mean"]) != float("inf") else format_value(s["mean"])}
            for m, s in summary.items()
        },
    }
    (args.out / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    _print_table(summary, len(evaluation.rows), len(evaluation.failures))
    print(f"wrote {args.out / 'metrics.csv'} and {args.out / 'summary.json'}")
    return 1 if evaluation.failures else 0

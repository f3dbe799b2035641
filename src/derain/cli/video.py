"""``derain video``: derain a video file or a folder of frames into another."""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

from ..checkpoint import CheckpointError
from .jobs import add_job_options, finish_job, start_job
from .run import add_model_options, load_derainer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "video",
        help="derain a video",
        description=(
            "Derain every frame of a video (or a folder of frames) and write a video (or a folder "
            "of PNG frames: an OUTPUT without suffix). Frame count, timestamps, size, pixel aspect, "
            "rotation and colour range are kept; audio streams are copied unchanged. With several "
            "INPUTs, OUTPUT is a folder that receives each under its own name. Needs the "
            "video extra: pip install 'derain[video]'."
        ),
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="video files or folders of frames")
    parser.add_argument(
        "-o", "--output", type=Path, required=True,
        help="video file, or a folder for PNG frames; with several inputs, the folder for their results",
    )
    add_model_options(parser)
    parser.add_argument("--codec", default="libx264", help="video encoder (default libx264)")
    parser.add_argument("--crf", type=int, default=16, help="quality of x264/x265/VP9/AV1, lower is better (default 16)")
    parser.add_argument(
        "--temporal", type=int, default=0, metavar="N",
        help="fuse each frame with N previous ones, aligned by optical flow, where they agree: less flicker (default 0: off)",
    )
    parser.add_argument("--fps", type=Fraction, default=Fraction(25), help="frame rate of a folder of frames (default 25)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    add_job_options(existing)
    parser.set_defaults(func=run)


def plan_outputs(inputs: list[Path], output: Path) -> tuple[list[tuple[Path, Path]], str | None]:
    """(input, output) pairs: OUTPUT itself for one input, ``OUTPUT/<input's name>`` for
    several; or why not (two inputs of one name, OUTPUT a file)."""
    if len(inputs) == 1:
        return [(inputs[0], output)], None
    if output.is_file() or output.suffix:
        return [], f"{output}: with {len(inputs)} inputs, OUTPUT is a folder (a path without suffix)"
    names: dict[str, Path] = {}
    for source in inputs:
        if source.name in names:
            return [], f"{source} and {names[source.name]} would both be written to {output / source.name}"
        names[source.name] = source
    return [(source, output / source.name) for source in inputs], None


def run(args: argparse.Namespace) -> int:
    try:
        from ..video import TruncatedVideoError, VideoError, derain_video
    except ImportError as err:
        print(f"derain video: error: {err.name} is missing; pip install 'derain[video]'", file=sys.stderr)
        return 2
    pairs, problem = plan_outputs(args.inputs, args.output)
    if problem:
        print(f"derain video: error: {problem}", file=sys.stderr)
        return 2
    if len(pairs) == 1 and args.output.exists() and not (args.overwrite or args.skip_existing):
        print(f"derain video: error: {args.output}: exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    shard = start_job("video", args)
    if shard is None:
        return 2
    if shard.main and len(pairs) < shard.world_size:
        print(f"derain video: note: {len(pairs)} input(s) for {shard.world_size} processes; a video runs in one process, so {shard.world_size - len(pairs)} stay idle", file=sys.stderr)
    mine = shard.take(pairs)  # whole videos: the frames of one video go to one file
    skipped = 0
    if args.skip_existing:
        skipped = sum(target.exists() for _, target in mine)
        mine = [(source, target) for source, target in mine if not target.exists()]
    failures: list[str] = []
    done, started = 0, time.perf_counter()
    if mine:
        try:
            derainer = load_derainer(args)
        except (CheckpointError, ValueError) as err:
            print(f"derain video: error: {err}", file=sys.stderr)
            return 2
    for source, target in mine:
        try:
            result = derain_video(
                source, target, derainer,
                temporal=args.temporal, codec=args.codec, crf=args.crf, fps=args.fps, overwrite=args.overwrite,
                progress=shard.main,
            )
        except TruncatedVideoError as err:
            failures.append(f"{err}; {target} not written")
        except VideoError as err:
            failures.append(str(err))
        except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: out of memory on the device
            failures.append(f"{source}: {err}")
        else:
            done += 1
            if result.audio_dropped:
                print(f"derain video: note: {target} is a folder of frames; the {result.audio_dropped} audio stream(s) of {source} are not kept", file=sys.stderr)
            print(f"{target}: {result.frames} frame(s) in {result.seconds:.1f} s ({result.frames / result.seconds:.2f} frames/s)", file=sys.stderr)
            continue
        print(f"derain video: error: {failures[-1]}", file=sys.stderr)
    if len(pairs) == 1 and not shard.distributed:  # one video: its own lines said it all
        if skipped:
            print(f"{args.output}: exists; skipped", file=sys.stderr)
        return 1 if failures else 0
    record = {"done": done, "skipped": skipped, "failures": failures, "seconds": time.perf_counter() - started}
    folder = args.output if len(pairs) > 1 else args.output.parent
    folder.mkdir(parents=True, exist_ok=True)
    return finish_job("video", shard, folder, record, "video")

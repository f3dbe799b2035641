"""``derain video``: derain a video file or a folder of frames into another."""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from ..checkpoint import CheckpointError
from .run import add_model_options, load_derainer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "video",
        help="derain a video",
        description=(
            "Derain every frame of a video (or a folder of frames) and write a video (or a folder "
            "of PNG frames: an OUTPUT without suffix). Frame count, timestamps, size, pixel aspect, "
            "rotation and colour range are kept; audio streams are copied unchanged. Needs the "
            "video extra: pip install 'derain[video]'."
        ),
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="video file or folder of frames")
    parser.add_argument("-o", "--output", type=Path, required=True, help="video file, or a folder for PNG frames")
    add_model_options(parser)
    parser.add_argument("--codec", default="libx264", help="video encoder (default libx264)")
    parser.add_argument("--crf", type=int, default=16, help="quality of x264/x265/VP9/AV1, lower is better (default 16)")
    parser.add_argument(
        "--temporal", type=int, default=0, metavar="N",
        help="fuse each frame with N previous ones, aligned by optical flow, where they agree: less flicker (default 0: off)",
    )
    parser.add_argument("--fps", type=Fraction, default=Fraction(25), help="frame rate of a folder of frames (default 25)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..video import TruncatedVideoError, VideoError, derain_video
    except ImportError as err:
        print(f"derain video: error: {err.name} is missing; pip install 'derain[video]'", file=sys.stderr)
        return 2
    if args.output.exists() and not args.overwrite:
        print(f"derain video: error: {args.output}: exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        derainer = load_derainer(args)
    except (CheckpointError, ValueError) as err:
        print(f"derain video: error: {err}", file=sys.stderr)
        return 2
    try:
        result = derain_video(
            args.input, args.output, derainer,
            temporal=args.temporal, codec=args.codec, crf=args.crf, fps=args.fps, overwrite=args.overwrite,
        )
    except TruncatedVideoError as err:
        print(f"derain video: error: {err}; {args.output} not written", file=sys.stderr)
        return 1
    except VideoError as err:
        print(f"derain video: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: out of memory on the device
        print(f"derain video: error: {args.input}: {err}", file=sys.stderr)
        return 1
    if result.audio_dropped:
        print(f"derain video: note: {args.output} is a folder of frames; the {result.audio_dropped} audio stream(s) of {args.input} are not kept", file=sys.stderr)
    print(f"{args.output}: {result.frames} frame(s) in {result.seconds:.1f} s ({result.frames / result.seconds:.2f} frames/s)", file=sys.stderr)
    return 0

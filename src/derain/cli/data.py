"""``derain data``: check and import published layouts, synthesise rain, build the corpora."""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from ..data.benchmark import build_benchmark, checksums, make_pairs
from ..data.layouts import LAYOUTS, check_pairs, import_layout, read_layout
from ..data.pairing import PairingError
from ..data.photos import CorpusError, build_corpus
from ..data.synth import PRESET_NAMES
from ..data.synth_video import CameraMotion, animated_presets

EXAMPLES = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check, import and synthesise datasets")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    check = commands.add_parser("check", help="detect a dataset's layout and report every problem")
    check.add_argument("root", type=Path)
    check.add_argument("--layout", choices=sorted(LAYOUTS), help="skip detection")
    check.set_defaults(func=run_check)

    importer = commands.add_parser("import", help="write a published layout as input/ + target/")
    importer.add_argument("layout", choices=sorted(LAYOUTS))
    importer.add_argument("src", type=Path)
    importer.add_argument("dest", type=Path)
    importer.set_defaults(func=run_import)

    synth = commands.add_parser("synth", help="rainy/clean pairs from a folder of clean photos")
    synth.add_argument("--clean", type=Path, required=True, help="folder of clean images")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--preset", choices=sorted(PRESET_NAMES), default="medium",
                       help="a rain family (docs/data.md shows each), or mixed: one drawn per image")
    synth.add_argument("--per-image", type=int, default=1)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--short-side", type=int, help="resize the photos first so their shorter side has this length")
    synth.add_argument("--vary-scenes", action="store_true",
                       help="training data: a random crop, exposure and colour change per pair, some blurred")
    synth.add_argument("--scene-lines", action="store_true",
                       help="training data: thin bright and dark lines (markings, wires) drawn into both sides of each pair")
    synth.set_defaults(func=run_synth)

    clip = commands.add_parser("synth-video", help="a rainy clip (and its clean frames) from one photo")
    clip.add_argument("--photo", type=Path, required=True, help="clean photo the camera looks at")
    clip.add_argument("--out", type=Path, required=True, help="rainy clip: a video file, or a folder of PNG frames")
    clip.add_argument("--clean", type=Path, help="also write the clean frames (video file or folder)")
    clip.add_argument("--frames", type=int, default=48)
    clip.add_argument("--size", default="320x224", metavar="WxH", help="frame size (default 320x224)")
    clip.add_argument("--fps", type=Fraction, default=Fraction(24))
    clip.add_argument("--preset", choices=animated_presets(), default="medium")
    clip.add_argument("--seed", type=int, default=0)
    clip.add_argument("--pan", type=float, nargs=2, default=(0.0, 0.0), metavar=("DX", "DY"), help="camera pan, photo px per frame")
    clip.add_argument("--zoom", type=float, default=0.0, help="zoom per frame (0.01: 1%% closer each frame)")
    clip.add_argument("--overwrite", action="store_true")
    clip.set_defaults(func=run_synth_video)

    photos = commands.add_parser("photos", help="build the 72-photo clean corpus from Debian packages")
    photos.add_argument("--out", type=Path, required=True)
    photos.add_argument("--debs", type=Path, help="folder with the .deb files already downloaded")
    photos.set_defaults(func=run_photos)

    bench = commands.add_parser("synth-benchmark", help="regenerate derain-synth from the photo corpus")
    bench.add_argument("--photos", type=Path, required=True, help="the corpus built by 'derain data photos'")
    bench.add_argument("--out", type=Path, required=True)
    bench.add_argument("--verify", type=Path, help="sha256 file to compare with (data/derain-synth.sha256)")
    bench.set_defaults(func=run_benchmark)


def run_check(args: argparse.Namespace) -> int:
    try:
        layout, splits = read_layout(args.root, args.layout)
    except (PairingError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.root}: layout {layout}")
    problems = []
    for split, pairs in splits.items():
        print(f"  {split or '.'}: {len(pairs)} pairs")
        for pair in pairs[:EXAMPLES]:
            label = f" [{pair.label}]" if pair.label else ""
            target = "(side by side)" if pair.side_by_side else pair.target.name
            print(f"    {pair.name}: {pair.input.name} <-> {target}{label}")
        problems += check_pairs(pairs)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


def run_import(args: argparse.Namespace) -> int:
    try:
        _, splits = import_layout(args.src, args.dest, args.layout)
    except (PairingError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, pairs in splits.items():
        print(f"{args.dest / split}: {len(pairs)} pairs")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    try:
        count = make_pairs(args.clean, args.out, preset=args.preset, per_image=args.per_image, seed=args.seed,
                           short_side=args.short_side, vary_scenes=args.vary_scenes,
                           scene_lines=args.scene_lines)
    except (PairingError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {count} {args.preset} pairs")
    return 0


def run_synth_video(args: argparse.Namespace) -> int:
    try:
        from ..video.synth import write_rainy_clip
        from ..video import VideoError
    except ImportError as err:
        print(f"error: {err.name} is missing; pip install 'derain[video]'", file=sys.stderr)
        return 2
    try:
        width, height = (int(side) for side in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size {args.size!r}: expected WIDTHxHEIGHT, e.g. 320x224", file=sys.stderr)
        return 2
    try:
        write_rainy_clip(
            args.photo, args.out, args.clean, frames=args.frames, width=width, height=height, fps=args.fps,
            preset=args.preset, seed=args.seed, motion=CameraMotion(tuple(args.pan), args.zoom), overwrite=args.overwrite,
        )
    except VideoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {args.frames} frames of {args.preset} rain" + (f"; clean frames in {args.clean}" if args.clean else ""))
    return 0


def run_photos(args: argparse.Namespace) -> int:
    try:
        counts = build_corpus(args.out, debs=args.debs)
    except (CorpusError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: " + ", ".join(f"{n} {split}" for split, n in counts.items()) + " photos; licences in LICENSES.tsv")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    try:
        counts = build_benchmark(args.photos, args.out)
    except (PairingError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: " + ", ".join(f"{folder} {n}" for folder, n in counts.items()))
    if args.verify is None:
        return 0
    expected = args.verify.read_text(encoding="utf-8").splitlines()
    actual = checksums(args.out).splitlines()
    differing = sorted(set(expected) ^ set(actual))
    if differing:
        print(f"error: {len(differing)} checksum line(s) differ from {args.verify}, e.g. {differing[:3]}", file=sys.stderr)
        return 1
    print(f"identical to {args.verify} ({len(actual)} files)")
    return 0

"""``derain run``: derain files, folders and globs into an output folder."""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoint import CheckpointError
from ..data.pairing import IMAGE_SUFFIXES
from ..factory import list_models
from ..imageio import DEFAULT_MAX_PIXELS, ImageReadError, fit_to_format, read_image, write_image
from ..inference import Deraining
from ..inference.api import AUTO, PRECISIONS, PROTOCOLS, resolve_device
from ..inference.backends import BACKENDS
from ..pretrained import DEFAULT_TAG, load_pretrained
from .jobs import add_job_options, finish_job, start_job

OUTPUT_FORMATS = ("png", "tif", "jpg", "webp", "bmp")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="derain images",
        description=(
            "Derain image files, folders and globs; outputs keep the input names. Without "
            f"--weights, the pretrained weights {DEFAULT_TAG!r} shipped with derain are used."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument("-o", "--output", type=Path, default=Path("derained"), help="output folder (default ./derained)")
    add_model_options(parser)
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="png",
        help="output format (default png; jpg/webp/bmp store 8 bits, jpg/bmp no alpha)",
    )
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing input files")
    add_job_options(parser)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")
    parser.set_defaults(func=run)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model, weights, tiling, device, precision and backend options; ``derain video`` shares them."""
    parser.add_argument("--model", choices=list_models(), help="architecture (default: detected from --weights)")
    parser.add_argument("--weights", type=Path, help="checkpoint file (default: the shipped pretrained weights)")
    parser.add_argument("--pretrained", default=DEFAULT_TAG, metavar="TAG", help=f"pretrained weights used without --weights (default {DEFAULT_TAG})")
    parser.add_argument(
        "--tile",
        type=int,
        help="tile side in pixels, used exactly (default: the largest that free memory holds, at least the "
        "model card's 256, halved on out-of-memory; whole images with --protocol official); "
        "0: whole images, memory grows with the image",
    )
    parser.add_argument("--overlap", type=int, help="pixels shared by tiles (default: the model card's)")
    parser.add_argument(
        "--working-size",
        type=int,
        metavar="PIXELS",
        help="on photos with a larger short side, first remove the rain the model finds on a copy "
        "shrunk to this short side, then derain at full size (default: the pretrained card's; none "
        "for --weights files and --protocol official); 0: one pass at full size",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="fp32",
        help="fp32 (default); fp16 or bf16 under autocast. On a CPU, bf16 pays off only with bfloat16 "
        "instructions (AVX512-BF16 or AMX) and runs fp32, with a warning, without them",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (on the CPU with frozen weights): faster tiles after a warm-up "
        "of a minute or more per tile shape",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch (default) or onnxruntime: the model exported to ONNX at start (a minute or more) "
        "and run by ONNX Runtime, fp32 only; needs pip install \"derain[export]\"",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images or video frames of one size per forward pass (tiles, for images larger than "
        "a tile); only for models whose batch items are independent, so results never change (default 1)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="blended",
        help="blended tiles (default) or the paper's own test procedure",
    )


def load_derainer(args: argparse.Namespace) -> Deraining:
    """The derainer the options of :func:`add_model_options` describe; a ``ValueError`` says
    in one line why it cannot be made."""
    problem = device_problem(args.device)
    if problem:
        raise ValueError(problem)
    if args.weights is None:
        model = load_pretrained(args.pretrained, architecture=args.model)
    else:
        model = args.model
    return Deraining(
        model,
        args.weights,
        tile=AUTO if args.tile is None else args.tile or None,
        overlap=args.overlap,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        protocol=args.protocol,
        backend=args.backend,
        compile=args.compile,
        working_size=AUTO if args.working_size is None else args.working_size or None,
    )


def collect_inputs(patterns: list[str], recursive: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, its path relative to the output folder) pairs, and problems.

    Folders contribute their image files (by suffix); files named explicitly are taken as
    they are; anything else is tried as a glob.
    """
    found, problems = [], []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            children = path.rglob("*") if recursive else path.iterdir()
            images = sorted(
                p for p in children
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not images:
                problems.append(f"{path}: no images found (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
            found += [(p, p.relative_to(path)) for p in images]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=recursive))
            files = [m for m in matches if m.is_file()]
            if not files:
                problems.append(f"{pattern}: no such file or folder, and no file matches it as a glob")
            found += [(m, Path(m.name)) for m in files]
    return found, problems


def skipped_subfolders(patterns: list[str], recursive: bool) -> list[str]:
    """One line for each input folder whose sub-folders are left out, so that a newcomer
    whose photos sit in sub-folders learns why they were not derained."""
    if recursive:
        return []
    notes = []
    for folder in (Path(p) for p in patterns if Path(p).is_dir()):
        subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if subfolders:
            images = sum(
                1 for sub in subfolders for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            notes.append(
                f"{folder}: skipped {len(subfolders)} sub-folder(s) holding {images} image(s); "
                "pass --recursive to derain them too"
            )
    return notes


def output_path(folder: Path, relative: Path, suffix: str) -> Path:
    """Where the result of ``relative`` goes: only the last suffix is replaced, so
    ``frame.0001.png`` stays ``frame.0001.png`` and image sequences never collide."""
    return folder / relative.parent / (relative.stem + suffix)


def device_problem(device: str) -> str | None:
    """Why ``--device`` cannot run here, in one line, or ``None``."""
    try:
        resolved = resolve_device(device)
    except RuntimeError as err:
        return f"--device {device!r} is not a device name ({err}); use cpu, cuda, cuda:N, mps or auto"
    if resolved.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:  # ROCm runs as cuda
            return (
                f"--device {device}: this torch {torch.__version__} is built without CUDA; "
                "use --device cpu, or install a CUDA build of torch"
            )
        if not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count():
            return f"--device {device}: no such CUDA GPU here ({torch.cuda.device_count()} found); use --device cpu"
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        return f"--device {device}: Apple MPS is not available here; use --device cpu"
    return None


def plan_outputs(
    jobs: list[tuple[Path, Path]], folder: Path, suffix: str, overwrite: bool
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs, and the inputs refused: an output that would replace an input
    (without ``overwrite``) or that another input already writes. Every process computes the
    same plan, so the split across processes is the same in all of them."""
    inputs = {source.resolve() for source, _ in jobs}
    claimed: dict[Path, Path] = {}
    tasks, problems = [], []
    for source, relative in jobs:
        target = output_path(folder, relative, suffix)
        if target.resolve() in inputs and not overwrite:
            problems.append(f"{source}: output {target} is an input file; pass --overwrite to replace it")
        elif target in claimed:
            problems.append(f"{source}: output {target} is already written from {claimed[target]}")
        else:
            claimed[target] = source
            tasks.append((source, target))
    return tasks, problems


def run(args: argparse.Namespace) -> int:
    shard = start_job("run", args)
    if shard is None:
        return 2
    try:
        derainer = load_derainer(args)
    except (CheckpointError, ValueError) as err:  # PretrainedError is a ValueError
        print(f"derain run: error: {err}", file=sys.stderr)
        return 2

    jobs, failures = collect_inputs(args.inputs, args.recursive)
    for note in skipped_subfolders(args.inputs, args.recursive):
        print(f"derain run: {note}", file=sys.stderr)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"derain run: error: cannot create the output folder {args.output}: {err.strerror}", file=sys.stderr)
        return 2
    suffix = "." + args.format
    tasks, refused = plan_outputs(jobs, args.output, suffix, args.overwrite)
    # Problems of the whole list are the same in every process: rank 0 reports them.
    failures = failures + refused if shard.main else []
    mine = shard.take(tasks)
    skipped = 0
    if args.skip_existing:
        mine = [(source, target) for source, target in mine if not target.exists()]
        skipped = len(shard.take(tasks)) - len(mine)
    started = time.perf_counter()
    bar = tqdm(total=len(mine), unit="image", desc="derain", disable=None if shard.main else True)
    tally = _Tally(failures)
    try:
        with bar:
            _derain_files(derainer, mine, args.max_pixels, suffix, tally, bar)
    except KeyboardInterrupt:
        print(f"interrupted: {tally.done} of {len(mine)} images derained", file=sys.stderr)
        _print_failures(tally.failures)
        return 130
    seconds = time.perf_counter() - started
    record = {"done": tally.done, "skipped": skipped, "failures": tally.failures, "seconds": seconds}
    return finish_job("run", shard, args.output, record, "image")


class _Tally:
    def __init__(self, failures: list[str]):
        self.done, self.failures = 0, failures


def _derain_files(
    derainer: Deraining, tasks: list[tuple[Path, Path]], max_pixels: int, suffix: str, tally: _Tally, bar: tqdm
) -> None:
    """Derain ``tasks`` in order; consecutive images of one size and type share a forward
    pass, up to ``derainer.batch_size`` (memory holds one batch, whatever the job's size)."""
    group: list[tuple[Path, Path, object]] = []

    def flush() -> None:
        if not group:
            return
        try:
            results = derainer.derain_batch([image for _, _, image in group])
        except (ValueError, RuntimeError) as err:  # RuntimeError: out of memory on the device
            if len(group) == 1:
                tally.failures.append(f"{group[0][0]}: {err}")
                bar.update()
                group.clear()
                return
            results = [None] * len(group)  # alone, each may fit
        for (source, target, image), restored in zip(group, results):
            try:
                if restored is None:
                    restored = derainer(image)
                target.parent.mkdir(parents=True, exist_ok=True)
                write_image(target, fit_to_format(restored, suffix))
                tally.done += 1
            except (ValueError, OSError, RuntimeError) as err:
                tally.failures.append(f"{source}: {err}")
            bar.update()
        group.clear()

    for source, target in tasks:
        try:
            image = read_image(source, max_pixels=max_pixels)
        except (ImageReadError, ValueError, OSError) as err:
            tally.failures.append(str(err) if isinstance(err, ImageReadError) else f"{source}: {err}")
            bar.update()
            continue
        if group and (group[0][2].shape, group[0][2].dtype) != (image.shape, image.dtype):
            flush()
        group.append((source, target, image))
        if len(group) >= derainer.batch_size:
            flush()
    flush()


def _print_failures(failures: list[str]) -> None:
    for failure in failures:
        print(f"  failed: {failure}", file=sys.stderr)

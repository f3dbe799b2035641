"""What ``derain run`` and ``derain video`` share as jobs of many files: ``--skip-existing``,
the split across the processes of torchrun or accelerate launch, and the one summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..distributed import Shard, configure, write_summary


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """Options of jobs of many files; ``derain video`` shares them."""
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose output exists (outputs are written atomically, so an existing one is "
        "complete): rerun an interrupted job with the same command to finish it",
    )


def start_job(command: str, args: argparse.Namespace) -> Shard | None:
    """This process's :class:`Shard` under torchrun or accelerate launch (a job of one
    otherwise), with ``args.device`` set to its own device; ``None`` after printing why not."""
    try:
        shard = Shard.from_environment()
    except ValueError as err:
        print(f"derain {command}: error: {err}", file=sys.stderr)
        return None
    if args.batch_size < 1:
        print(f"derain {command}: error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return None
    args.device = configure(shard, args.device)
    return shard


def finish_job(command: str, shard: Shard, folder: Path, record: dict, unit: str) -> int:
    """Gather every process's ``record`` on rank 0, print one summary there (and, for several
    processes, write it as ``folder/derain-summary.json``); the exit code."""
    records = shard.gather(record)
    if records is None:  # not rank 0: rank 0 reports for the job
        return 1 if record["failures"] else 0
    total = {key: sum(r[key] for r in records) for key in ("done", "skipped")}
    failures = [failure for r in records for failure in r["failures"]]
    seconds = max(r["seconds"] for r in records)
    processes = f" by {shard.world_size} processes" if shard.distributed else ""
    skipped = f"; {total['skipped']} already done" if total["skipped"] else ""
    print(f"derained {total['done']} {unit}(s){processes} in {seconds:.1f} s{skipped}; {len(failures)} failed", file=sys.stderr)
    for failure in failures:
        print(f"  failed: {failure}", file=sys.stderr)
    if shard.distributed:
        summary = {
            "command": f"derain {command}",
            "processes": shard.world_size,
            "derained": total["done"],
            "skipped": total["skipped"],
            "failed": len(failures),
            "seconds": round(seconds, 3),
            "failures": failures,
        }
        try:
            path = write_summary(folder, summary)
            print(f"summary: {path}", file=sys.stderr)
        except OSError as err:
            print(f"derain {command}: error: cannot write the summary in {folder}: {err.strerror}", file=sys.stderr)
            return 1
    return 1 if failures else 0

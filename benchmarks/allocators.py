"""Time and peak memory of one forward under each memory allocator derain can run with.

Feature maps of a full-resolution stage are tens to hundreds of MB, allocated and freed at
every layer, so the allocator decides both how fast a forward runs (fresh maps cost page
faults and zero-filling) and how much memory the process keeps (freed maps that cannot be
reused grow the heap). Settings, each in a fresh process:

- ``tune()``: glibc as ``derain run`` sets it (:func:`derain.cpu.keep_freed_memory`).
- ``glibc``: glibc's defaults (``DERAIN_CPU_TUNING=0``).
- ``jemalloc`` and ``tcmalloc``: the library preloaded (``LD_PRELOAD``), with its defaults;
  rows are skipped where the library is not installed (Debian: ``libjemalloc2``,
  ``libtcmalloc-minimal4``). ``--jemalloc-conf`` adds a jemalloc row per ``MALLOC_CONF`` given.
  Every process inherits this one's environment, so a tcmalloc variant is one variable away
  (``TCMALLOC_AGGRESSIVE_DECOMMIT=true python benchmarks/allocators.py --only tcmalloc``).

Each cell: the model in its paper configuration (seed 0), ``Deraining`` on a whole uint8
image (``tile=None``), one warm-up forward, then the median of ``--repeats`` forwards, and the
process's peak resident memory (``ru_maxrss``) over all of them. Reported, never asserted.

    OMP_NUM_THREADS=2 python benchmarks/allocators.py --models drsformer --sizes 512
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import resource

from fresh_process import in_fresh_process  # the sibling module

MODELS = ("drsformer", "cpraformer", "dmsr", "ddsaformer")
PRELOADED = {"jemalloc": "jemalloc", "tcmalloc": "tcmalloc_minimal"}  # setting: library name


def settings(jemalloc_confs: list[str]) -> dict[str, dict[str, str] | None]:
    """Environment of each setting's process; None where its library is not installed."""
    found = {name: ctypes.util.find_library(library) for name, library in PRELOADED.items()}
    chosen = {
        "tune()": {},
        "glibc": {"DERAIN_CPU_TUNING": "0"},
        **{name: {"LD_PRELOAD": path} if path else None for name, path in found.items()},
    }
    for conf in jemalloc_confs:
        chosen[f"jemalloc {conf}"] = {"LD_PRELOAD": found["jemalloc"], "MALLOC_CONF": conf} if found["jemalloc"] else None
    return chosen


def cell(name: str, side: int, repeats: int) -> tuple[float, float]:
    """(median seconds of a forward, peak MiB) of ``derain run``'s path on one whole image."""
    import derain.cpu

    derain.cpu.tune()  # as the derain command does, before torch starts; DERAIN_CPU_TUNING=0 skips it
    import numpy as np
    import torch

    import derain
    from derain.inference import Deraining
    from roofline import median_seconds  # the sibling module; imports torch, so after tune()

    torch.manual_seed(0)
    derainer = Deraining(derain.create_model(name).eval(), tile=None, device="cpu", progress=False)
    image = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    seconds = median_seconds(lambda: derainer(image), "cpu", repeats)  # after one warm-up forward
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[512], help="square sides, whole images")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards after the warm-up")
    parser.add_argument("--jemalloc-conf", action="append", default=[], metavar="MALLOC_CONF",
                        help="one more jemalloc row with this MALLOC_CONF (repeatable)")
    parser.add_argument("--only", nargs="+", metavar="SETTING", help="run only these settings (names as in the table)")
    args = parser.parse_args()

    print(f"{os.environ.get('OMP_NUM_THREADS', 'default')} threads, float32, batch 1, whole images; "
          f"median of {args.repeats} forwards after a warm-up; peak resident MiB of a fresh process\n")
    print("| model | input | allocator | s | peak MiB | s / tune() | peak / tune() |")
    print("|---|---|---|---|---|---|---|")
    chosen = settings(args.jemalloc_conf)
    for name in args.models:
        for side in args.sizes:
            base = None
            for setting, environment in chosen.items():
                if args.only and setting not in args.only:
                    continue
                if environment is None:
                    print(f"| {name} | {side} | {setting} | not installed | | | |", flush=True)
                    continue
                saved = dict(os.environ)
                os.environ.update(environment)  # the spawned process inherits it
                try:
                    seconds, peak = in_fresh_process(cell, name, side, args.repeats)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                base = base or (seconds, peak)
                print(f"| {name} | {side} | {setting} | {seconds:.2f} | {peak:.0f} | "
                      f"{seconds / base[0]:.2f} | {peak / base[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()

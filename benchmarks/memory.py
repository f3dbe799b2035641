"""Peak resident memory of one forward: derain beside the official code, and a 12 MP photo in tiles.

Every cell runs in a fresh process and reports that process's peak resident set size
(``ru_maxrss``), so it counts everything the process holds at its worst moment: Python,
torch, the weights, the image and the feature maps, and memory the allocator keeps.

- official: the official model (paper configuration, seed 0) in a plain process, as its
  users run it, one forward of a random image under ``torch.inference_mode()``.
- derain: :func:`derain.cpu.tune` applied first, as the ``derain`` command does, then the path
  ``derain run`` takes: :class:`derain.inference.Deraining` on a uint8 RGB array, whole image
  (``tile=None``) for the square sizes.
- tiled: derain on a random ``--large`` photo (default 4000x3000) with 512-pixel tiles,
  against derain's 512x512 whole-image peak.

The official code is not part of derain: pass checkouts (cschenxiang/DRSformer, zs1314/DAIT
for CPRAformer, zs1314/DMSR) and install ``einops``; without one, that model's official
column stays empty (DDSAformer has no official code). Reported, never asserted. Leave
``MALLOC_*`` and ``GLIBC_TUNABLES`` unset: both the official and derain cells inherit them.

    OMP_NUM_THREADS=2 python benchmarks/memory.py --drsformer ../DRSformer --cpraformer ../DAIT \\
        --dmsr ../DMSR --sizes 512
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
from pathlib import Path

from fresh_process import in_fresh_process  # the sibling module

OFFICIAL = {  # where each official class lives inside its repository: (directory, module, class)
    "drsformer": ("basicsr/models/archs", "DRSformer_arch", "DRSformer"),
    "cpraformer": (".", "models.DAIT", "DAIT"),
    "dmsr": (".", "models.DMSR", "DMSR"),
}
MODELS = ("drsformer", "cpraformer", "dmsr", "ddsaformer")
TILE = 512


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def official_cell(name: str, checkout: str, height: int, width: int) -> tuple[float, float, float]:
    """(peak MiB, MiB resident after building the model, MiB of weights) of the official code."""
    import torch

    directory, module, cls = OFFICIAL[name]
    sys.path.insert(0, str(Path(checkout) / directory))
    torch.manual_seed(0)
    model = getattr(importlib.import_module(module), cls)().eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    rainy = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    built = _current_mib()
    with torch.inference_mode():
        model(rainy)
    return _peak_mib(), built, weights


def derain_cell(name: str, height: int, width: int, tile: int | None) -> tuple[float, float, float]:
    """(peak MiB, MiB resident after building the model, MiB of weights) of ``derain run``'s path."""
    import derain.cpu

    derain.cpu.tune()  # as the derain command does, before torch starts
    import numpy as np
    import torch

    import derain
    from derain.inference import Deraining

    torch.manual_seed(0)
    model = derain.create_model(name).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    derainer = Deraining(model, tile=tile, device="cpu", progress=False)
    image = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    built = _current_mib()
    derainer(image)
    return _peak_mib(), built, weights


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in OFFICIAL:
        parser.add_argument(f"--{name}", metavar="CHECKOUT", help=f"official repository of {name}")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[512], help="square sides, whole images")
    parser.add_argument("--large", default="4000x3000", help="WIDTHxHEIGHT of the tiled photo")
    parser.add_argument("--skip-large", action="store_true", help="no tiled photo (it takes long on a CPU)")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {os.environ.get('OMP_NUM_THREADS', 'default')} threads, float32, "
          f"batch 1, peak resident MiB (ru_maxrss) of a fresh process; 'built' is resident before the forward\n")
    large = _size(args.large)
    sizes = args.sizes if args.skip_large or TILE in args.sizes else [*args.sizes, TILE]  # the tiled ratio's base
    header = "| model | weights MiB | input | official peak (built) | derain peak (built) | derain / official |"
    if not args.skip_large:
        header += f" {args.large}, {TILE} tiles | tiled / derain {TILE}x{TILE} |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.models:
        checkout = getattr(args, name, None)
        for side in sizes:
            ours, ours_built, weights = in_fresh_process(derain_cell, name, side, side, None)
            row = f"| {name} | {weights:.0f} | {side}x{side} |"
            if checkout:
                theirs, theirs_built, _ = in_fresh_process(official_cell, name, checkout, side, side)
                row += f" {theirs:.0f} ({theirs_built:.0f}) | {ours:.0f} ({ours_built:.0f}) | {ours / theirs:.2f} |"
            else:
                row += f" - | {ours:.0f} ({ours_built:.0f}) | - |"
            if not args.skip_large:
                if side == TILE:
                    tiled, _, _ = in_fresh_process(derain_cell, name, *large, TILE)
                    row += f" {tiled:.0f} | {tiled / ours:.2f} |"
                else:
                    row += " | |"
            print(row, flush=True)


if __name__ == "__main__":
    main()

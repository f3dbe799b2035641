"""Seconds per megapixel of a whole ``derain run`` for candidate default-model configurations.

The default model must derain a photo in at most 10 s per megapixel on 2 CPU cores in float32,
decode, tiles, model and encode included (issue 8). Each candidate is timed on the same photo
(a test photo of derain-synth, tiled up to about 1.2 MP), untrained weights: speed does not
depend on the values. Reported, never asserted.

    OMP_NUM_THREADS=2 python benchmarks/default_model_speed.py
    OMP_NUM_THREADS=2 python benchmarks/default_model_speed.py --candidates default
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import numpy as np
import torch

import derain
from derain.imageio import read_image, write_image
from derain.inference import Deraining
from derain.training import load_config

RECIPE = load_config(Path(__file__).resolve().parents[1] / "configs" / "derain-synth.yaml", check_paths=False)

# name -> (architecture, config); every DRSformer here is the no-MEFC variant unless it says so.
# Full-resolution blocks (level 1) dominate the time; deeper levels add capacity almost for free.
CANDIDATES = {
    "default": (RECIPE.model.name, RECIPE.model.config),  # configs/derain-synth.yaml
    "drsformer-16-1222-ffn2": ("drsformer", {"dim": 16, "num_blocks": [1, 2, 2, 2], "heads": [1, 2, 4, 8], "ffn_expansion_factor": 2.0, "mefc": False}),
    "drsformer-16-2334": ("drsformer", {"dim": 16, "num_blocks": [2, 3, 3, 4], "heads": [1, 2, 4, 8], "mefc": False}),
    "drsformer-16-1223": ("drsformer", {"dim": 16, "num_blocks": [1, 2, 2, 3], "heads": [1, 2, 4, 8], "mefc": False}),
    "drsformer-16-4668": ("drsformer", {"dim": 16, "num_blocks": [4, 6, 6, 8], "heads": [1, 2, 4, 8], "mefc": False}),
    "drsformer-16-2334-mefc": ("drsformer", {"dim": 16, "num_blocks": [2, 3, 3, 4], "heads": [1, 2, 4, 8], "mefc": True}),
    "drsformer-24-2334": ("drsformer", {"dim": 24, "num_blocks": [2, 3, 3, 4], "heads": [1, 2, 4, 8], "mefc": False}),
}
CORPUS = Path(os.environ.get("CORPUS", "corpus"))  # as scripts/train_default.sh
DEFAULT_PHOTO = CORPUS / "derain-synth" / "test" / "heavy" / "input" / "Storm_0.png"


def tiled_photo(path: Path, megapixels: float) -> np.ndarray:
    """The photo repeated (mirrored) until it holds about ``megapixels`` million pixels."""
    image = read_image(path)
    reps = max(1, round((megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5))
    return np.pad(image, ((0, image.shape[0] * (reps - 1)), (0, image.shape[1] * (reps - 1)), (0, 0)), mode="symmetric")


def seconds_per_megapixel(model: torch.nn.Module, photo: Path, tile: int, overlap: int) -> tuple[float, float]:
    """Wall time of decode + derain + PNG encode of ``photo``, per megapixel; and its megapixels."""
    derainer = Deraining(model, tile=tile, overlap=overlap, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        image = read_image(photo)
        write_image(Path(folder) / "restored.png", derainer(image))
        elapsed = time.perf_counter() - started
    megapixels = image.shape[0] * image.shape[1] / 1e6
    return elapsed / megapixels, megapixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO, help="a photo (tiled up to --megapixels)")
    parser.add_argument("--megapixels", type=float, default=1.2)
    parser.add_argument("--tile", type=int, default=derain.model_card("drsformer").tile, help="default: DRSformer's card")
    parser.add_argument("--overlap", type=int, default=derain.model_card("drsformer").overlap)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "photo.png"
        write_image(photo, tiled_photo(args.photo, args.megapixels))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tile {args.tile}, overlap {args.overlap}")
        print("| candidate | params | MB fp32 | MP | s/MP |\n|---|---|---|---|---|")
        for name in args.candidates:
            architecture, config = CANDIDATES[name]
            model = derain.create_model(architecture, **config)
            params = sum(p.numel() for p in model.parameters())
            rate, megapixels = seconds_per_megapixel(model, photo, args.tile, args.overlap)
            print(f"| {name} | {params / 1e6:.2f} M | {params * 4 / 1e6:.1f} | {megapixels:.2f} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()

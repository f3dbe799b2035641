"""Rain photographed with more pixels: one full-size pass beside the two-pass working size.

Real photos are often two to eight times the size of the photos a model was trained on, and
their streaks are as many times wider and longer. This enlarges held-out synthetic pairs
(derain-synth's test presets and ``families/`` split, or the val pairs while choosing) by
``--enlarge`` (bicubic, rainy and clean alike) and scores, under the ``rain100`` protocol
(Y-PSNR, dB), the rainy input, one pass of the model at full size (``working_size=None``) and
the two passes of :mod:`derain.inference.working_size` at each ``--size``. Reported, never
asserted. ``--figure PATH`` also saves, for the first pair, a full-resolution crop of the rainy
input, each result and the clean photo side by side.

    OMP_NUM_THREADS=2 python benchmarks/working_size.py $CORPUS/derain-synth/test/heavy \\
        $CORPUS/derain-synth/families/{ddn,storm} --enlarge 2 --sizes 480 --limit 4 --figure docs/working_size.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import numpy as np
import torch
import torch.nn.functional as F

from derain.data.pairing import pair_folders
from derain.imageio import read_image, to_uint8
from derain.inference import Deraining
from derain.metrics import psnr_ssim_matlab
from derain.pretrained import DEFAULT_TAG, load_pretrained

from real_photos import centre_crop, strip  # the sibling script in this folder

FIGURE_CROP = 512


def enlarged(path: Path, factor: float) -> torch.Tensor:
    image = torch.tensor(to_uint8(read_image(path))).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, scale_factor=factor, mode="bicubic", align_corners=False).clamp_(0, 1)


def as_uint8(image: torch.Tensor) -> np.ndarray:
    return (image[0].permute(1, 2, 0) * 255).round().byte().numpy()


def y_psnr(image: torch.Tensor, clean: torch.Tensor) -> float:
    return psnr_ssim_matlab(as_uint8(image), as_uint8(clean), protocol="rain100")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of pairs (input/, target/)")
    parser.add_argument("--pretrained", default=DEFAULT_TAG)
    parser.add_argument("--enlarge", type=float, default=2.0)
    parser.add_argument("--sizes", nargs="+", type=int, default=[480])
    parser.add_argument("--limit", type=int, default=4, help="pairs per folder (evenly spaced)")
    parser.add_argument("--figure", type=Path, help="save crops of the first pair here")
    args = parser.parse_args()

    model = load_pretrained(args.pretrained)
    derainers = {"one pass": Deraining(model, device="cpu", working_size=None, progress=False)}
    derainers |= {f"two passes, {size}": Deraining(model, device="cpu", working_size=size, progress=False) for size in args.sizes}
    print(f"{args.pretrained}, pairs enlarged x{args.enlarge:g}; Y-PSNR (dB), rain100 protocol")
    print("| pairs | n | rainy input | " + " | ".join(derainers) + " |")
    print("|---|---|---|" + "---|" * len(derainers))
    figure = args.figure  # drawn from the first pair only
    for folder in args.folders:
        pairs = pair_folders(folder / "input", folder / "target")
        pairs = [pairs[k] for k in np.linspace(0, len(pairs) - 1, min(args.limit, len(pairs))).round().astype(int)]
        scores: dict[str, list[float]] = {"rainy input": []} | {name: [] for name in derainers}
        for pair in pairs:
            rainy, clean = enlarged(pair.input, args.enlarge), enlarged(pair.target, args.enlarge)
            scores["rainy input"].append(y_psnr(rainy, clean))
            results = {name: derainer.restore(rainy) for name, derainer in derainers.items()}
            for name, restored in results.items():
                scores[name].append(y_psnr(restored, clean))
            if figure is not None:
                images = [as_uint8(x) for x in (rainy, *results.values(), clean)]
                labels = ["rainy input", *(f"{name}: {y_psnr(x, clean):.2f} dB" for name, x in results.items()), "clean"]
                strip([centre_crop(image, FIGURE_CROP) for image in images], labels).save(figure, quality=88)
                figure = None
        means = " | ".join(f"{np.mean(values):.2f}" for values in scores.values())
        print(f"| {folder.parent.name}/{folder.name} | {len(pairs)} | {means} |", flush=True)


if __name__ == "__main__":
    main()

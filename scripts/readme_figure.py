"""Make README's before/after figure: the default pretrained model on a held-out derain-synth test photo.

The test photos of derain-synth are never seen in training (the corpus is split by photo), so
the figure shows what a user gets on a new photo. Panels: rainy input, derain's result, clean
photo, each labelled with its PSNR against the clean photo (``rain100`` protocol).

    derain data photos --out data/photos
    derain data synth-benchmark --photos data/photos --out data/derain-synth
    python scripts/readme_figure.py --benchmark data/derain-synth --preset heavy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import derain
from derain.imageio import read_image, to_uint8
from derain.metrics import psnr_ssim_matlab
from derain.pretrained import DEFAULT_TAG, load_pretrained

LABEL_HEIGHT = 28
GAP = 8


def labelled(image: np.ndarray, text: str) -> Image.Image:
    panel = Image.new("RGB", (image.shape[1], image.shape[0] + LABEL_HEIGHT), "white")
    panel.paste(Image.fromarray(image), (0, LABEL_HEIGHT))
    ImageDraw.Draw(panel).text((6, 6), text, fill="black", font_size=16)
    return panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, required=True, help="derain-synth root (from 'derain data synth-benchmark')")
    parser.add_argument("--preset", choices=("light", "medium", "heavy"), default="heavy")
    parser.add_argument("--name", help="test pair stem (default: the first)")
    parser.add_argument("--weights", type=Path, help=f"a checkpoint instead of the shipped {DEFAULT_TAG!r}")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("docs/before_after.jpg"))
    args = parser.parse_args()

    folder = args.benchmark / "test" / args.preset
    names = sorted(p.stem for p in (folder / "input").glob("*.png"))
    if not names:
        parser.error(f"{folder / 'input'}: no test pairs; build derain-synth first")
    name = args.name or names[0]
    rainy = to_uint8(read_image(folder / "input" / f"{name}.png"))
    clean = to_uint8(read_image(folder / "target" / f"{name}.png"))
    model = derain.load_checkpoint(args.weights) if args.weights else load_pretrained(DEFAULT_TAG)
    restored = derain.Deraining(model, tile=args.tile, device="cpu")(rainy)

    panels = [
        labelled(rainy, f"rainy ({args.preset}): {psnr_ssim_matlab(rainy, clean, protocol='rain100')[0]:.2f} dB"),
        labelled(restored, f"derain: {psnr_ssim_matlab(restored, clean, protocol='rain100')[0]:.2f} dB"),
        labelled(clean, "clean"),
    ]
    figure = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), panels[0].height), "white")
    for i, panel in enumerate(panels):
        figure.paste(panel, (i * (panel.width + GAP), 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.convert("RGB").save(args.out, quality=88)  # JPEG: the README figure stays under 400 KB
    print(f"wrote {args.out} ({name}, {args.preset})")


if __name__ == "__main__":
    main()

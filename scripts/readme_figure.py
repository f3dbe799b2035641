"""Make README's before/after figure: the default pretrained model on real rainy photos and on a held-out derain-synth test photo.

A real photo has no clean counterpart: its row shows input and result only. The test photos of derain-synth are never seen in training (the corpus is split by photo), so
the figure shows what a user gets on a new photo. Panels: rainy input, derain's result, clean
photo, each labelled with its PSNR against the clean photo (``rain100`` protocol).

    derain data photos --out data/photos
    derain data synth-benchmark --photos data/photos --out data/derain-synth
    python scripts/readme_figure.py --benchmark data/derain-synth --preset heavy \\
        --photo DAY.jpg --photo-crop 450,600,900,600 --photo-caption "heavy rain, day" \\
        --photo NIGHT.jpg --photo-crop 900,100,900,600 --photo-caption "rain at night"

``--photo``, ``--photo-crop`` and ``--photo-caption`` repeat, one row per photo, in order.
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


def row(panels: list[Image.Image], width: int) -> Image.Image:
    """Panels side by side, the whole row scaled to ``width``."""
    sheet = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), panels[0].height), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * (panel.width + GAP), 0))
    return sheet.resize((width, round(sheet.height * width / sheet.width)), Image.Resampling.LANCZOS)


def crop_box(text: str) -> tuple[int, int, int, int]:
    left, top, width, height = (int(v) for v in text.split(","))
    return left, top, left + width, top + height


def test_photo_row(deraining, folder: Path, name: str, preset: str) -> list[Image.Image]:
    """Rainy, derained and clean panels of one derain-synth test pair."""
    rainy = to_uint8(read_image(folder / "input" / f"{name}.png"))
    clean = to_uint8(read_image(folder / "target" / f"{name}.png"))
    restored = deraining(rainy)
    return [
        labelled(rainy, f"rainy ({preset}): {psnr_ssim_matlab(rainy, clean, protocol='rain100')[0]:.2f} dB"),
        labelled(restored, f"derain: {psnr_ssim_matlab(restored, clean, protocol='rain100')[0]:.2f} dB"),
        labelled(clean, "clean"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, help="derain-synth root (from 'derain data synth-benchmark') for a last row")
    parser.add_argument("--preset", choices=("light", "medium", "heavy"), default="heavy")
    parser.add_argument("--name", help="test pair stem (default: the first)")
    parser.add_argument("--photo", type=Path, action="append", default=[], help="a real rainy photo (no clean counterpart): a row above the test photo")
    parser.add_argument("--photo-crop", type=crop_box, action="append", default=[], metavar="LEFT,TOP,WIDTH,HEIGHT", help="the part of each --photo shown")
    parser.add_argument("--photo-caption", action="append", default=[], help="label of each --photo's input panel")
    parser.add_argument("--weights", type=Path, help=f"a checkpoint instead of the shipped {DEFAULT_TAG!r}")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--width", type=int, default=1200, help="figure width in pixels")
    parser.add_argument("--out", type=Path, default=Path("docs/before_after.jpg"))
    args = parser.parse_args()
    for option in ("photo_crop", "photo_caption"):
        given = getattr(args, option)
        if given and len(given) != len(args.photo):
            parser.error(f"--{option.replace('_', '-')} given {len(given)} times for {len(args.photo)} --photo")

    if args.benchmark is None and not args.photo:
        parser.error("nothing to show: give --benchmark, --photo or both")
    if args.benchmark is not None:
        folder = args.benchmark / "test" / args.preset
        names = sorted(p.stem for p in (folder / "input").glob("*.png"))
        if not names:
            parser.error(f"{folder / 'input'}: no test pairs; build derain-synth first")
        name = args.name or names[0]
    model = derain.load_checkpoint(args.weights) if args.weights else load_pretrained(DEFAULT_TAG)
    deraining = derain.Deraining(model, tile=args.tile, device="cpu")
    label = args.weights.name if args.weights else DEFAULT_TAG

    rows = []
    for i, path in enumerate(args.photo):
        photo = Image.open(path).convert("RGB")
        box = args.photo_crop[i] if args.photo_crop else (0, 0, *photo.size)
        caption = args.photo_caption[i] if args.photo_caption else "real rainy photo"
        rainy = np.asarray(photo)
        restored = deraining(rainy)
        crop = lambda image: np.ascontiguousarray(image[box[1] : box[3], box[0] : box[2]])  # noqa: E731
        rows.append([labelled(crop(rainy), caption), labelled(crop(restored), f"derain ({label})")])
    if args.benchmark is not None:
        rows.append(test_photo_row(deraining, folder, name, args.preset))
    scaled = [row(panels, args.width) for panels in rows]
    figure = Image.new("RGB", (args.width, sum(r.height for r in scaled) + GAP * (len(scaled) - 1)), "white")
    top = 0
    for r in scaled:
        figure.paste(r, (0, top))
        top += r.height + GAP
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, quality=80)  # JPEG: the README figure stays under 400 KB
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

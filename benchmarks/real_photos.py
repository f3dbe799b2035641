"""Models side by side on real rainy photos: NIQE/BRISQUE and before/after crops.

Real rainy photos have no clean counterpart, so only no-reference scores and eyes can judge a
model on them. Given a folder of photos (for instance real-world rainy images that deraining
repositories publish: look at them and score them, never train on them, and commit only those
whose licence allows), this writes, for each photo, a strip ``input | model A | model B ...``
of the whole image and of a centre crop at full resolution, and prints NIQE/BRISQUE of the
input and of every model's output (lower is better for both).

    python benchmarks/real_photos.py PHOTOS_DIR --out real_rain_strips \\
        --model derain-synth --model RUN_DIR/best.pth --json scores.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from derain.checkpoint import load_checkpoint
from derain.data.pairing import list_images
from derain.imageio import read_rgb8
from derain.inference import Deraining
from derain.metrics import brisque, niqe
from derain.pretrained import load_pretrained

CROP = 384
LABEL_HEIGHT = 22


def load(model: str):
    """A shipped pretrained tag, or a checkpoint file."""
    return load_checkpoint(model) if Path(model).exists() else load_pretrained(model)


def strip(images: list[np.ndarray], labels: list[str]) -> Image.Image:
    height, width = images[0].shape[:2]
    sheet = Image.new("RGB", (width * len(images), height + LABEL_HEIGHT), "white")
    for k, (image, label) in enumerate(zip(images, labels)):
        sheet.paste(Image.fromarray(image), (k * width, LABEL_HEIGHT))
        ImageDraw.Draw(sheet).text((k * width + 4, 3), label, fill="black", font_size=14)
    return sheet


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[top : top + size, left : left + size]


def scores(image: np.ndarray) -> dict[str, float | None]:
    """NIQE and BRISQUE, or None with the reason printed where a metric cannot score the image."""
    result = {}
    for name, metric in (("niqe", niqe), ("brisque", brisque)):
        try:
            result[name] = float(metric(image))
        except ValueError as error:
            print(f"  {name}: no value ({error})")
            result[name] = None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--model", action="append", required=True, help="pretrained tag or checkpoint; repeat")
    parser.add_argument("--out", type=Path, required=True, help="folder for the strips")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    derainers = {name: Deraining(load(name), device="cpu") for name in args.model}
    args.out.mkdir(parents=True, exist_ok=True)
    table = {}
    for path in list_images(args.photos):
        rainy = read_rgb8(path)
        outputs = {name: derainer(rainy) for name, derainer in derainers.items()}
        table[path.name] = {"input": scores(rainy)} | {name: scores(image) for name, image in outputs.items()}
        labels = ["input", *(Path(name).stem for name in outputs)]
        images = [rainy, *outputs.values()]
        strip(images, labels).save(args.out / f"{path.stem}_whole.jpg", quality=90)
        strip([centre_crop(image, CROP) for image in images], labels).save(args.out / f"{path.stem}_crop.png")
        row = " | ".join(f"{k}: NIQE {v['niqe'] or float('nan'):.2f} BRISQUE {v['brisque'] or float('nan'):.1f}" for k, v in table[path.name].items())
        print(f"{path.name}: {row}", flush=True)
    means = {
        kind: {m: float(np.nanmean([row[kind][m] if row[kind][m] is not None else np.nan for row in table.values()])) for m in ("niqe", "brisque")}
        for kind in ["input", *args.model]
    }
    print("| | NIQE | BRISQUE |\n|---|---|---|")
    for kind, mean in means.items():
        print(f"| {kind} | {mean['niqe']:.3f} | {mean['brisque']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"per_photo": table, "mean": means}, indent=2) + "\n")


if __name__ == "__main__":
    main()

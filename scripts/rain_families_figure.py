"""Draw every rain family of ``derain.data.synth`` on one photo: ``docs/rain_families.jpg``.

The photo is scikit-image's ``coffee`` (public domain, bundled in ``tests/data/photos``), resized
to the 321-px height of Rain100/Rain200. Each panel is what ``derain data synth --preset NAME``
makes of it with the same seed; the last panel is the clean side of a ``--scene-lines`` pair.

    python scripts/rain_families_figure.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from derain.data.benchmark import _resize_short_side, add_scene_lines
from derain.data.synth import FAMILIES, PRESETS, REFERENCE_HEIGHT, synthesize

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = 4
LABEL_HEIGHT = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=ROOT / "tests" / "data" / "photos" / "coffee.png")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "rain_families.jpg")
    args = parser.parse_args()

    photo = _resize_short_side(np.asarray(Image.open(args.photo).convert("RGB")), REFERENCE_HEIGHT)
    panels = [("clean photo", photo)]
    panels += [(name, synthesize(photo, name, args.seed)[0]) for name in (*PRESETS, *FAMILIES)]
    panels.append(("--scene-lines, clean side", add_scene_lines(photo, args.seed)[0]))
    height, width = photo.shape[:2]
    rows = -(-len(panels) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * width, rows * (height + LABEL_HEIGHT)), "white")
    for index, (name, image) in enumerate(panels):
        left, top = (index % COLUMNS) * width, (index // COLUMNS) * (height + LABEL_HEIGHT)
        sheet.paste(Image.fromarray(image), (left, top + LABEL_HEIGHT))
        ImageDraw.Draw(sheet).text((left + 6, top + 4), name, fill="black", font_size=16)
    sheet.save(args.out, quality=68)
    print(f"{args.out}: {len(panels)} panels, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

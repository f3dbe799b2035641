"""Make README's before/after strip of the bundled clip: rainy frames above, derained below.

The shipped model derains every frame of ``src/derain/demo/examples/chelsea_rain.mp4`` with
``--temporal 2`` (as ``derain video --temporal 2`` does); the strip shows every eighth frame.

    python scripts/video_strip.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from derain.imageio import write_image
from derain.inference import Deraining
from derain.inference.api import DEFAULT_TILE
from derain.video import TemporalFusion, VideoReader

ROOT = Path(__file__).resolve().parent.parent
LABEL_WIDTH, GAP = 96, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "src/derain/demo/examples/chelsea_rain.mp4")
    parser.add_argument("--every", type=int, default=8, help="show every Nth frame")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/video_before_after.png")
    args = parser.parse_args()

    derainer, fusion = Deraining(tile=DEFAULT_TILE), TemporalFusion(2)
    rainy, restored = [], []
    with VideoReader(args.clip) as reader:
        for index, frame in enumerate(reader.frames()):
            output = fusion(derainer(frame.image))
            if index % args.every == 0:
                rainy.append(frame.image)
                restored.append(output)
    height, width = rainy[0].shape[:2]
    strip = Image.new("RGB", (LABEL_WIDTH + len(rainy) * (width + GAP), 2 * height + GAP), "white")
    draw = ImageDraw.Draw(strip)
    for row, (label, frames) in enumerate([("rainy", rainy), ("derain video\n--temporal 2", restored)]):
        top = row * (height + GAP)
        draw.text((6, top + height // 2 - 10), label, fill="black", font_size=13)
        for column, image in enumerate(frames):
            strip.paste(Image.fromarray(image), (LABEL_WIDTH + column * (width + GAP), top))
    write_image(args.out, np.asarray(strip))
    print(f"wrote {args.out}: frames 1, {', '.join(str(1 + i * args.every) for i in range(1, len(rainy)))}")


if __name__ == "__main__":
    main()

"""Flicker and quality of frame-by-frame deraining with and without ``--temporal N`` (issue 16).

Synthetic rainy clips (``derain.data.synth_video``) over the test photos, each rain preset with a
still camera and with one that pans and zooms; the shipped default model derains every frame
once, then ``TemporalFusion`` is applied for each N. Per row: mean warping error between
consecutive frames (flow measured on the clean frames, so every row is aligned alike) and mean
PSNR/SSIM against the clean frames (``rain100`` protocol). Frames stay in memory: no video codec
between the steps. Reported, never asserted. Writes the markdown table to ``--markdown``.

    OMP_NUM_THREADS=2 python benchmarks/temporal.py --markdown benchmarks/temporal.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from derain.data.synth_video import CameraMotion, rainy_clip
from derain.imageio import read_image
from derain.inference import Deraining
from derain.inference.api import DEFAULT_TILE
from derain.metrics import psnr_ssim_matlab
from derain.video.flicker import warping_errors
from derain.video import TemporalFusion

PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "data" / "photos"
CLIPS = [("astronaut", "light"), ("chelsea", "medium"), ("coffee", "heavy")]
CAMERAS = {"still": CameraMotion(), "pan+zoom": CameraMotion((0.8, 0.3), 0.003)}


def scores(frames: list[np.ndarray], clean: list[np.ndarray]) -> tuple[float, float, float]:
    """(mean warping error, mean PSNR, mean SSIM) of ``frames`` against ``clean``."""
    psnr, ssim = zip(*(psnr_ssim_matlab(f, c, "rain100") for f, c in zip(frames, clean)))
    return float(np.mean(list(warping_errors(frames, clean)))), float(np.mean(psnr)), float(np.mean(ssim))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(192, 128), metavar=("W", "H"))
    parser.add_argument("--windows", type=int, nargs="+", default=(1, 2, 3))
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    width, height = args.size
    derainer = Deraining(tile=DEFAULT_TILE)  # the shipped derain-synth model, as derain video runs it
    rows, totals = [], {}
    for stem, preset in CLIPS:
        photo = read_image(PHOTOS / f"{stem}.png")[..., :3]
        for camera, motion in CAMERAS.items():
            pairs = list(rainy_clip(photo, args.frames, height=height, width=width, preset=preset, seed=16, motion=motion))
            clean = [c for c, _ in pairs]
            started = time.perf_counter()
            outputs = [derainer(rainy) for _, rainy in pairs]
            model_seconds = (time.perf_counter() - started) / len(outputs)
            variants = {"rainy input": [r for _, r in pairs], "per frame": outputs}
            seconds = {"per frame": model_seconds}
            for window in args.windows:
                fusion = TemporalFusion(window)
                started = time.perf_counter()
                variants[f"--temporal {window}"] = [fusion(frame) for frame in outputs]
                seconds[f"--temporal {window}"] = model_seconds + (time.perf_counter() - started) / len(outputs)
            for name, frames in variants.items():
                warping, psnr, ssim = scores(frames, clean)
                rows.append((f"{stem} {preset}", camera, name, warping, psnr, ssim, seconds.get(name)))
                totals.setdefault(name, []).append((warping, psnr, ssim))
                print(*rows[-1], flush=True)
    lines = [
        "| clip | camera | output | warping error ×1e3 | PSNR | SSIM | s/frame |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {clip} | {camera} | {name} | {w * 1e3:.3f} | {p:.2f} | {s:.4f} | {'' if t is None else f'{t:.3f}'} |"
        for clip, camera, name, w, p, s, t in rows
    ]
    base_w, base_p, _ = np.mean(totals["per frame"], axis=0)
    lines += ["", "| output (mean of the 6 clips) | warping error ×1e3 | change | PSNR | change |", "|---|---|---|---|---|"]
    for name, values in totals.items():
        w, p, _ = np.mean(values, axis=0)
        lines.append(f"| {name} | {w * 1e3:.3f} | {100 * (w / base_w - 1):+.1f} % | {p:.2f} | {p - base_p:+.2f} dB |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()

"""Pairs per second of paper-protocol PSNR+SSIM on 481x321 images, beside scikit-image.

scikit-image's ``structural_similarity`` (Gaussian 11x11, sigma 1.5, population covariance) and
``peak_signal_noise_ratio`` run on the same rain100 Y channel. scikit-image is a benchmark
dependency only. Run with ``OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from derain.metrics.matlab import psnr_ssim_matlab, rgb2y_uint8


def _pairs(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        clean = rng.integers(0, 256, (321, 481, 3), dtype=np.uint8)
        noise = rng.normal(0, 10, clean.shape)
        pairs.append((np.clip(clean + noise, 0, 255).astype(np.uint8), clean))
    return pairs


def _rate(function, pairs, repeats: int) -> float:
    function(*pairs[0])  # warm-up
    best = min(_timed(function, pairs) for _ in range(repeats))
    return len(pairs) / best


def _timed(function, pairs) -> float:
    start = time.perf_counter()
    for restored, clean in pairs:
        function(restored, clean)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pairs = _pairs(args.pairs)
    rows = [
        ("derain rain100 (Y uint8 + PSNR + SSIM)", lambda r, c: psnr_ssim_matlab(r, c, "rain100")),
        ("derain ddn (Y double + PSNR + SSIM)", lambda r, c: psnr_ssim_matlab(r, c, "ddn")),
    ]
    try:
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    except ImportError:
        print("scikit-image is not installed: skipping its rows")
    else:

        def skimage_y(restored, clean):
            y_restored, y_clean = rgb2y_uint8(restored).astype(np.float64), rgb2y_uint8(clean).astype(np.float64)
            peak_signal_noise_ratio(y_clean, y_restored, data_range=255)
            structural_similarity(
                y_clean, y_restored, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
            )

        rows.append(("scikit-image on the same rain100 Y (PSNR + SSIM)", skimage_y))
    print(f"| method | pairs/s (481x321, {args.pairs} pairs, one process) |")
    print("|---|---|")
    for label, function in rows:
        print(f"| {label} | {_rate(function, pairs, args.repeats):.1f} |")
    with ProcessPoolExecutor(2) as pool:  # what `derain eval --workers 2` does
        list(pool.map(_rain100, pairs[:4]))
        start = time.perf_counter()
        list(pool.map(_rain100, pairs, chunksize=4))
        print(f"| derain rain100, 2 processes | {len(pairs) / (time.perf_counter() - start):.1f} |")


def _rain100(pair):
    return psnr_ssim_matlab(*pair, "rain100")


if __name__ == "__main__":
    main()

"""Evaluate a folder of restored images: paper-protocol PSNR/SSIM against clean images, and/or
the no-reference NIQE and BRISQUE. ``derain eval`` is a shell over :func:`evaluate_folders`."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.pairing import list_images, pair_folders
from ..imageio import ImageReadError, read_image
from .brisque import brisque
from .matlab import PROTOCOLS, psnr_ssim_matlab
from .niqe import niqe

FULL_REFERENCE = ("psnr", "ssim")
NO_REFERENCE = ("niqe", "brisque")
METRICS = FULL_REFERENCE + NO_REFERENCE


@dataclass
class Evaluation:
    """Per-image values (``None`` = no value), failures, why values are missing, per-metric means."""

    metrics: tuple[str, ...]
    rows: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    no_value: list[tuple[str, str, str]] = field(default_factory=list)  # (name, metric, reason)

    def summary(self) -> dict[str, dict]:
        """``{metric: {"mean": float | None, "count": int, "no_value": int}}``; like the MATLAB
        scripts, one ``inf`` PSNR makes the mean ``inf``."""
        out = {}
        for metric in self.metrics:
            values = [row[metric] for row in self.rows if row[metric] is not None]
            out[metric] = {
                "mean": float(np.mean(values)) if values else None,
                "count": len(values),
                "no_value": len(self.rows) - len(values),
            }
        return out


def _read_8bit(path: Path, why: str) -> np.ndarray:
    image = read_image(path, upright=False)  # MATLAB's imread ignores EXIF orientation
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: {image.dtype} image; {why} (8-bit images only)")
    return image


def _evaluate_one(
    job: tuple[str, Path, Path | None, str, tuple[str, ...]],
) -> tuple[str, dict | None, str | None, list[tuple[str, str]]]:
    """One image's values, or the reason it failed, and (metric, reason) for each value it has not.

    Never raises for a bad file or a degenerate image, so one of them spares the rest.
    """
    name, restored_path, clean_path, protocol, metrics = job
    why = f"the {protocol} protocol fixes the peak at 255" if clean_path else "NIQE/BRISQUE models are fit to 8-bit images"
    try:
        restored = _read_8bit(restored_path, why)
        row: dict = {"name": name}
        if clean_path is not None:
            clean = _read_8bit(clean_path, why)
            if restored.shape[:2] != clean.shape[:2]:
                raise ValueError(
                    f"sizes differ: {restored_path} is {restored.shape[0]}x{restored.shape[1]}, "
                    f"{clean_path} is {clean.shape[0]}x{clean.shape[1]}"
                )
            row["psnr"], row["ssim"] = psnr_ssim_matlab(restored, clean, protocol)
    except (ImageReadError, ValueError, OSError) as err:
        return name, None, str(err), []
    missing = []
    for metric, score in (("niqe", niqe), ("brisque", brisque)):
        if metric not in metrics:
            continue
        try:
            row[metric] = float(score(restored))
            if not math.isfinite(row[metric]):
                raise ValueError(f"the score is {row[metric]}")
        except (ValueError, ArithmeticError) as err:  # a degenerate image, e.g. without texture
            row[metric] = None
            missing.append((metric, str(err)))
    return name, {m: row.get(m) for m in ("name",) + metrics}, None, missing


def evaluate_folders(
    restored_dir: str | Path,
    clean_dir: str | Path | None = None,
    *,
    protocol: str = "rain100",
    metrics: tuple[str, ...] | None = None,
    by: str = "stem",
    workers: int = 1,
    progress: bool = False,
) -> Evaluation:
    """Evaluate every image of ``restored_dir``.

    With ``clean_dir``, images are paired by stem (or by sorted position, ``by="sorted"``, as the
    official scripts do) and PSNR/SSIM follow ``protocol``; unmatched files raise
    :class:`derain.data.pairing.PairingError`. Without it only no-reference metrics are available.
    Unreadable or mismatched images are recorded in ``failures``; the other images are evaluated.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if metrics is None:
        metrics = FULL_REFERENCE if clean_dir is not None else NO_REFERENCE
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {METRICS}")
    if clean_dir is None and any(m in FULL_REFERENCE for m in metrics):
        raise ValueError(f"{', '.join(m for m in metrics if m in FULL_REFERENCE)} need clean images (clean_dir)")

    if clean_dir is not None:
        pairs = [(p.name, p.input, p.target) for p in pair_folders(restored_dir, clean_dir, by=by)]
    else:
        pairs = [(p.stem, p, None) for p in list_images(restored_dir)]
    jobs = [(name, restored, clean, protocol, tuple(metrics)) for name, restored, clean in pairs]

    evaluation = Evaluation(tuple(metrics))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_evaluate_one, jobs, chunksize=4)
            results = list(tqdm(results, total=len(jobs), disable=not progress, unit="img"))
    else:
        results = [_evaluate_one(job) for job in tqdm(jobs, disable=not progress, unit="img")]
    for name, row, error, missing in results:
        if error is None:
            evaluation.rows.append(row)
        else:
            evaluation.failures.append((name, error))
        evaluation.no_value += [(name, metric, reason) for metric, reason in missing]
    return evaluation


def format_value(value: float | None, digits: int = 4) -> str:
    """``inf``/``-inf`` as such, ``None`` as an empty string (no value), otherwise fixed digits."""
    if value is None:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"

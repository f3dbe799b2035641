"""Temporal stability of a frame sequence: the warping error between consecutive frames.

As in Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018): frame t-1 is warped
onto frame t by optical flow, and E = sum_x M(x) ||V_t(x) - warp(V_{t-1})(x)||^2 / sum_x M(x),
RGB in [0, 1], M the mask of pixels visible in both frames. A static sequence scores 0; a
flickering one more. Needs the ``video`` extra (OpenCV computes the flow).
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from ..metrics.folders import Evaluation
from ..metrics.matlab import psnr_ssim_matlab
from .flow import align
from .io import VideoReader


def warping_error(
    current: np.ndarray,
    previous: np.ndarray,
    guide_current: np.ndarray | None = None,
    guide_previous: np.ndarray | None = None,
) -> float:
    """E between two RGB uint8 frames (H, W, 3); the flow is measured on the guides where given
    (clean frames: the same flow for every method compared), else on the frames."""
    aligned, visible = align(current, previous, guide_current, guide_previous)
    squared = np.sum((current.astype(np.float64) / 255 - aligned.astype(np.float64) / 255) ** 2, axis=2)
    return float(squared[visible].mean()) if visible.any() else 0.0


def warping_errors(frames: Iterable[np.ndarray], guides: Iterable[np.ndarray] | None = None) -> Iterator[float]:
    """:func:`warping_error` of each consecutive pair, in order (one fewer than the frames)."""
    frames = list(frames)
    guides = list(guides) if guides is not None else [None] * len(frames)
    for t in range(1, len(frames)):
        yield warping_error(frames[t], frames[t - 1], guides[t], guides[t - 1])


def evaluate_video(
    restored: str | os.PathLike, clean: str | os.PathLike | None = None, *, protocol: str = "rain100"
) -> Evaluation:
    """Per frame: the warping error from the previous frame (flow measured on the clean frames
    where given) and, with ``clean``, PSNR/SSIM under ``protocol``. Videos or frame folders,
    read one frame at a time."""
    metrics = ("psnr", "ssim", "warping") if clean is not None else ("warping",)
    evaluation = Evaluation(metrics)
    with VideoReader(restored) as restored_reader:
        clean_reader = VideoReader(clean) if clean is not None else None
        try:
            clean_frames = clean_reader.frames() if clean_reader else None
            previous = previous_guide = None
            for frame in restored_reader.frames():
                guide = next(clean_frames, None) if clean_frames is not None else None
                if clean_frames is not None and guide is None:
                    raise ValueError(f"{clean} has fewer frames than {restored} (no frame for {frame.name})")
                guide_image = guide.image if guide is not None else None
                row = {"name": frame.name}
                if guide is not None:
                    row["psnr"], row["ssim"] = psnr_ssim_matlab(frame.image, guide_image, protocol)
                row["warping"] = None if previous is None else warping_error(frame.image, previous, guide_image, previous_guide)
                evaluation.rows.append(row)
                previous, previous_guide = frame.image, guide_image
            if clean_frames is not None and next(clean_frames, None) is not None:
                raise ValueError(f"{clean} has more frames than {restored} ({len(evaluation.rows)})")
        finally:
            if clean_reader:
                clean_reader.close()
    return evaluation

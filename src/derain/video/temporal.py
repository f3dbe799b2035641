"""Temporal fusion: lowers the flicker of frame-by-frame deraining (:mod:`derain.video.flicker`).

Deraining frame by frame flickers: what the model leaves of the rain differs from one frame to
the next. ``TemporalFusion`` averages each output with its previous outputs, warped onto it by
optical flow, wherever they agree: in static or consistently moving parts of the scene the
independent residues average out, while occluded pixels and pixels the flow got wrong keep the
frame's own output.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from .flow import align


class TemporalFusion:
    """Fuse each restored frame (RGB uint8) with up to ``window`` previous ones.

    A neighbour's pixel gets weight exp(-(d / tolerance)^2), d the mean absolute RGB difference
    (0-1 scale) from the current output, and weight 0 where it is occluded; the current frame
    has weight 1. The tolerance (0.08: 20 levels of 255) lets the residues of rain average out
    while a moving object, which differs by more, is not smeared.
    """

    def __init__(self, window: int, tolerance: float = 0.08):
        if window < 1:
            raise ValueError(f"temporal window must be >= 1, got {window}")
        self.tolerance = tolerance
        self.history: deque[np.ndarray] = deque(maxlen=window)

    def __call__(self, restored: np.ndarray) -> np.ndarray:
        current = restored.astype(np.float32) / 255
        total, weights = current.copy(), np.ones(current.shape[:2], np.float32)
        for previous in self.history:
            # Bicubic: bilinear resampling blurs the neighbours, which costs PSNR where the camera moves.
            aligned, visible = align(restored, previous, interpolation=cv2.INTER_CUBIC)
            aligned = aligned.astype(np.float32) / 255
            difference = np.abs(aligned - current).mean(axis=2)
            weight = np.exp(-((difference / self.tolerance) ** 2)) * visible
            total += weight[..., None] * aligned
            weights += weight
        self.history.appendleft(restored)
        return np.round(total / weights[..., None] * 255).astype(np.uint8)


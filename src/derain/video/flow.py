"""Optical flow (OpenCV's DIS: no network weights), backward warping and occlusion masks.

Conventions: ``flow = optical_flow(target, source)`` holds, for each pixel x of ``target``, the
displacement to the same point in ``source``: target(x) ≈ source(x + flow(x)). ``warp(source,
flow)`` then aligns ``source`` to ``target``.
"""

from __future__ import annotations

import cv2
import numpy as np


def optical_flow(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Flow (H, W, 2) float32 from ``target`` to ``source``, both RGB uint8 (H, W, 3)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(target), _gray(source), None)


def warp(source: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """``source`` (H, W, C) sampled at x + flow(x) (bilinear by default); the dtype is kept."""
    height, width = flow.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(source, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def visible_mask(flow_forward: np.ndarray, flow_backward: np.ndarray) -> np.ndarray:
    """Pixels of the target seen in the source (H, W) bool, by forward-backward consistency.

    The test of Lai et al. (ECCV 2018) and Ruder et al. (GCPR 2016): a pixel is occluded where
    going there and back does not return, |F + B(x + F)|^2 >= 0.01 (|F|^2 + |B(x + F)|^2) + 0.5,
    or where x + F leaves the frame.
    """
    back = warp(flow_backward, flow_forward)
    mismatch = np.sum((flow_forward + back) ** 2, axis=2)
    bound = 0.01 * (np.sum(flow_forward**2, axis=2) + np.sum(back**2, axis=2)) + 0.5
    height, width = flow_forward.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width]
    x, y = grid_x + flow_forward[..., 0], grid_y + flow_forward[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return (mismatch < bound) & inside


def align(
    target: np.ndarray,
    source: np.ndarray,
    guide_target: np.ndarray | None = None,
    guide_source: np.ndarray | None = None,
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, np.ndarray]:
    """``source`` warped onto ``target`` and the mask of pixels visible in both.

    The flow is measured on the guides (default: the frames themselves), e.g. on clean frames
    so that a metric does not depend on the output it measures.
    """
    guide_target = target if guide_target is None else guide_target
    guide_source = source if guide_source is None else guide_source
    forward = optical_flow(guide_target, guide_source)
    backward = optical_flow(guide_source, guide_target)
    return warp(source, forward, interpolation), visible_mask(forward, backward)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)

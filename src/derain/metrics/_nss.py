"""Natural-scene-statistics building blocks of NIQE (float64 NumPy); BRISQUE shares the window.

They follow pyiqa (chaofengc/IQA-PyTorch, ``archs/func_util.py``, ``matlab_utils``), whose defaults
the deraining papers report, which in turn follow the LIVE MATLAB releases of NIQE and BRISQUE.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gammaln

# Shape parameters searched by moment matching, 0.2:0.001:10 as in the LIVE code. pyiqa builds the
# grid in float32, so its values are float32-rounded; keep them so the chosen shapes agree.
_SHAPES = np.arange(0.2, 10 + 0.001, 0.001, dtype=np.float32).astype(np.float64)
_AGGD_RATIO = 1 / np.exp(gammaln(1 / _SHAPES) + gammaln(3 / _SHAPES) - 2 * gammaln(2 / _SHAPES))


def luma(image: np.ndarray) -> np.ndarray:
    """0-255 float64 gray image: ``round(0.299 R + 0.587 G + 0.114 B)`` (pyiqa's default YIQ Y),
    or the gray values as they are."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 image, got shape {image.shape}")
    rgb = image[..., :3].astype(np.float64)
    return np.round(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size) - (size - 1) / 2
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return window / window.sum()


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients ``(I - mu) / (sigma + 1)`` with a 7×7
    Gaussian (sigma 7/6) and replicate padding, as NIQE computes them."""
    # pyiqa rounds the window to float32, so it no longer sums to exactly 1 and flat regions give
    # tiny non-zero coefficients that count towards one side of the AGGD fits in flat areas, so
    # the same rounding is kept here.
    window = gaussian_window().astype(np.float32).astype(np.float64)
    mu = correlate(image, window, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
    return (image - mu) / (sigma + 1)


def aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian: shape and the left/right standard deviations.

    A side without samples (a flat block of a real photo) has a NaN deviation, as in pyiqa
    (``0 / 0`` in torch) and the LIVE code (``mean([])``); the shape search then returns the first
    shape, as ``argmin`` over NaN does there, and NIQE leaves the block out of its fit.
    """
    left, right = x[x < 0], x[x > 0]
    left_std = math.sqrt(np.mean(left * left)) if left.size else math.nan
    right_std = math.sqrt(np.mean(right * right)) if right.size else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma_hat = np.float64(left_std) / right_std
        r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin(np.abs(_AGGD_RATIO - r_hat_norm))])
    return shape, left_std, right_std


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _resize_weights(length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize`` bicubic contributions along one axis, antialiased when shrinking."""
    out_length = math.ceil(length * scale)
    width = 4 / scale if scale < 1 else 4
    u = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if scale < 1 else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(length), np.arange(length - 1, -1, -1)])
    return weights, mirror[(indices.astype(np.int64) - 1) % (2 * length)]


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiasing, symmetric borders), float64."""
    weights, indices = _resize_weights(image.shape[0], 0.5)
    image = np.einsum("ok,okw->ow", weights, image[indices])
    weights, indices = _resize_weights(image.shape[1], 0.5)
    return np.einsum("ok,hok->ho", weights, image[:, indices])

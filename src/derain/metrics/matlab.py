"""PSNR and SSIM exactly as the deraining papers' MATLAB scripts compute them.

Two protocols (their full description, with reference values, is in ``tests/data/metrics_ref``):

``"rain100"``
    ``evaluate_PSNR_SSIM.m`` (DAIT, DRSformer: Rain100L/H, Test100/1200/2800, Rain200L/H, SPA-Data).
    Y of MATLAB's ``rgb2ycbcr`` on uint8 (rounded to uint8), Wang 2003 SSIM over the valid region.
``"ddn"``
    ``statistic.m`` + ``psnr.m`` + ``ssim.m`` (DRSformer: DID-Data, DDN-Data). Unrounded double Y,
    Wang 2009 SSIM with its automatic downsampling.

Everything is computed in float64 in MATLAB's order of operations, so the values agree with the
scripts to about 1e-13. Where a script gives no value (it raises an error) the functions here
return ``None``; they never substitute a number.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

PROTOCOLS = ("rain100", "ddn")

# MATLAB rgb2ycbcr: T = (1/255) * [65.481 128.553 24.966] (first row), offset 16 (uint8 scale).
_Y_WEIGHTS = tuple((1.0 / 255.0) * c for c in (65.481, 128.553, 24.966))
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_PEAK = 255.0


def _gaussian_window_1d(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """1-D factor of ``fspecial('gaussian', size, sigma)`` (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


_WINDOW_1D = _gaussian_window_1d()


def _rgb2y_sum(rgb: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``((T1*R + T2*G) + T3*B) + offset`` in float64, in ``imlincomb``'s order (no fused ops)."""
    r, g, b = (rgb[..., i].astype(np.float64) / scale for i in range(3))
    y = _Y_WEIGHTS[0] * r
    y += _Y_WEIGHTS[1] * g
    y += _Y_WEIGHTS[2] * b
    y += offset
    return y


def rgb2y_uint8(rgb: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr(uint8)``: H×W×3 uint8 → H×W uint8 (values 16..235).

    MATLAB rounds half away from zero; ``np.round`` rounds half to even, which differs on the
    RGB triplets whose Y lands exactly on n + 0.5.
    """
    y = _rgb2y_sum(rgb, 1.0, 16.0)
    whole = np.floor(y)
    whole += (y - whole) >= 0.5  # exact: y - floor(y) has no rounding error
    return whole.astype(np.uint8)


def rgb2y_double(rgb: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr(im2double(uint8))``: H×W×3 uint8 → H×W float64 in [16/255, 235/255]."""
    return _rgb2y_sum(rgb, 255.0, 16.0 / 255.0)


def _filter_valid(stack: np.ndarray) -> np.ndarray:
    """``filter2(fspecial('gaussian', 11, 1.5), ·, 'valid')`` on every map of a (K, H, W) stack."""
    half = _SSIM_WINDOW // 2
    out = correlate1d(stack, _WINDOW_1D, axis=-1, mode="constant")[..., half:-half]
    return correlate1d(out, _WINDOW_1D, axis=-2, mode="constant")[..., half:-half, :]


def ssim_valid(x: np.ndarray, y: np.ndarray, peak: float = _PEAK) -> float:
    """Wang et al. 2004 SSIM: 11×11 Gaussian (sigma 1.5), K = (0.01, 0.03), mean over the valid region.

    This is the body shared by ``SSIM_index.m`` (2003) and ``ssim.m`` (2009, after downsampling).
    ``x`` and ``y`` are float64 H×W arrays with H, W >= 11.
    """
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    mu_x, mu_y, xx, yy, xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]))
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    mu_xy = mu_x * mu_y
    numerator = (2.0 * mu_xy + c1) * (2.0 * (xy - mu_xy) + c2)
    denominator = (mu_xx + mu_yy + c1) * ((xx - mu_xx) + (yy - mu_yy) + c2)
    return float(np.mean(numerator / denominator))


def matlab_round(value: float) -> int:
    """MATLAB ``round``: half away from zero (Python's ``round`` rounds half to even)."""
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def ddn_downsample_factor(height: int, width: int) -> int:
    """``f = max(1, round(min(H, W) / 256))`` of ``ssim.m``: 383 → 1, 384 → 2, 640 → 3."""
    return max(1, matlab_round(min(height, width) / 256))


def _ddn_downsample(image: np.ndarray, f: int) -> np.ndarray:
    """``imfilter(img, ones(f)/f^2, 'symmetric', 'same')`` then ``img(1:f:end, 1:f:end)``.

    MATLAB centres the kernel at ``floor((f + 1) / 2)``, so output row i averages input rows
    ``i - (c - 1) .. i + (f - c)``; only the kept rows and columns are computed.
    """
    c = (f + 1) // 2
    padded = np.pad(image, ((c - 1, f - c), (c - 1, f - c)), mode="symmetric")
    rows, cols = -(-image.shape[0] // f), -(-image.shape[1] // f)
    weight = 1.0 / (f * f)
    total = np.zeros((rows, cols))
    for di in range(f):
        for dj in range(f):
            total += weight * padded[di::f, dj::f][:rows, :cols]
    return total


def _psnr_from_mse(mse: float, peak: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _as_matlab_image(image: np.ndarray, role: str) -> np.ndarray:
    """Check one ``imread`` result: uint8, H×W or H×W×C with C in (1, 3, 4); alpha is dropped as
    MATLAB's ``imread`` returns it separately."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        dtype = getattr(image, "dtype", type(image).__name__)
        raise TypeError(
            f"{role} image must be a uint8 array (the MATLAB protocols fix the peak at 255), got {dtype}"
        )
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        return image[..., 0] if image.shape[2] == 1 else image[..., :3]
    if image.ndim == 2:
        return image
    raise ValueError(f"{role} image must be H×W or H×W×{{1,3,4}}, got shape {image.shape}")


def psnr_ssim_matlab(
    restored: np.ndarray, clean: np.ndarray, protocol: str = "rain100"
) -> tuple[float | None, float | None]:
    """PSNR (dB) and SSIM of one uint8 pair as the paper scripts of ``protocol`` compute them.

    Returns ``(psnr, ssim)``; ``math.inf`` for identical Y, ``-math.inf`` where ``ssim.m`` returns
    ``-Inf`` (``ddn``, side < 11), and ``None`` where the script raises an error instead of giving
    a value (``rain100`` SSIM with a side < 11; both values for a grayscale image under ``ddn``).

    >>> import numpy as np
    >>> gt = np.full((32, 32, 3), 128, np.uint8)
    >>> psnr_ssim_matlab(gt, gt, "rain100")
    (inf, 1.0)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    restored = _as_matlab_image(restored, "restored")
    clean = _as_matlab_image(clean, "clean")
    if restored.shape[:2] != clean.shape[:2]:
        raise ValueError(
            f"restored and clean sizes differ: {restored.shape[0]}x{restored.shape[1]} "
            f"vs {clean.shape[0]}x{clean.shape[1]}"
        )
    height, width = restored.shape[:2]

    if protocol == "rain100":
        y_restored = (rgb2y_uint8(restored) if restored.ndim == 3 else restored).astype(np.float64)
        y_clean = (rgb2y_uint8(clean) if clean.ndim == 3 else clean).astype(np.float64)
        psnr = _psnr_from_mse(float(np.mean((y_restored - y_clean) ** 2)), _PEAK)
        # SSIM_index.m assigns the wrong output variable for small images: MATLAB raises an error.
        ssim = None if min(height, width) < _SSIM_WINDOW else ssim_valid(y_restored, y_clean)
        return psnr, ssim

    if restored.ndim == 2 or clean.ndim == 2:  # rgb2ycbcr raises on a single channel: no value
        return None, None
    y_restored, y_clean = rgb2y_double(restored), rgb2y_double(clean)
    # psnr.m guesses the peak from max(restored) <= 2, which is always 1 for Y.
    psnr = _psnr_from_mse(float(np.sum((y_restored - y_clean) ** 2)) / (height * width), 1.0)
    if min(height, width) < _SSIM_WINDOW:
        return psnr, -math.inf
    f = ddn_downsample_factor(height, width)
    y_restored, y_clean = y_restored * 255.0, y_clean * 255.0
    if f > 1:
        y_restored, y_clean = _ddn_downsample(y_restored, f), _ddn_downsample(y_clean, f)
    return psnr, ssim_valid(y_restored, y_clean)

"""NIQE, the "completely blind" image quality score (lower is better), as pyiqa's default ``niqe``.

Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer", IEEE SPL
2013; LIVE MATLAB release ``niqe_release.zip``. The pristine multivariate Gaussian
(``data/niqe_pris_params.npz``) is LIVE's model as shipped in BasicSR's source distribution
(Apache-2.0, see ``data/NOTICE``). Processing follows pyiqa (chaofengc/IQA-PyTorch,
``archs/niqe_arch.py``): rounded YIQ luma, 96×96 blocks (partial blocks dropped), 18 AGGD features
per block at full and half resolution, neighbour products taken with circular shifts inside each
block.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np
from scipy.special import gammaln

from ._nss import aggd_fit, imresize_half, luma, mscn

BLOCK = 96
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@lru_cache(maxsize=1)
def _pristine_model() -> tuple[np.ndarray, np.ndarray]:
    with files(__package__).joinpath("data/niqe_pris_params.npz").open("rb") as f:
        params = np.load(f)
        return params["mu_pris_param"].ravel(), params["cov_pris_param"]


def _block_features(block: np.ndarray) -> list[float]:
    shape, left, right = aggd_fit(block)
    to_beta = lambda a: np.sqrt(np.exp(gammaln(1 / a) - gammaln(3 / a)))  # noqa: E731
    features = [shape, (left + right) * to_beta(shape) / 2]
    for shift in _SHIFTS:
        shape, left, right = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        beta_l, beta_r = left * to_beta(shape), right * to_beta(shape)
        mean = (beta_r - beta_l) * np.exp(gammaln(2 / shape) - gammaln(1 / shape))
        features += [shape, mean, beta_l, beta_r]
    return features


def _scale_features(image: np.ndarray, block: int) -> np.ndarray:
    coefficients = mscn(image)
    rows, cols = image.shape[0] // block, image.shape[1] // block
    return np.array(
        [
            _block_features(coefficients[i * block : (i + 1) * block, j * block : (j + 1) * block])
            for i in range(rows)
            for j in range(cols)
        ]
    )


def niqe(image: np.ndarray) -> float:
    """NIQE of an 8-bit H×W or H×W×3 image (at least 96×96 pixels; an alpha channel is ignored)."""
    gray = luma(image)
    rows, cols = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    if rows * cols < 2:
        raise ValueError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks, got an image of {gray.shape[0]}x{gray.shape[1]}")
    gray = gray[: rows * BLOCK, : cols * BLOCK]
    features = np.concatenate(
        [_scale_features(gray, BLOCK), _scale_features(imresize_half(gray), BLOCK // 2)], axis=1
    )
    # Blocks without texture give NaN features; MATLAB's nanmean/nancov skip them.
    textured = features[~np.isnan(features).any(axis=1)]
    if len(textured) < 2:
        raise ValueError(
            f"NIQE is undefined: {len(textured)} of {len(features)} {BLOCK}x{BLOCK} blocks have texture "
            "(at least two are needed to fit the model)"
        )
    mu = np.nanmean(features, axis=0)
    cov = np.cov(textured, rowvar=False)
    mu_pristine, cov_pristine = _pristine_model()
    diff = mu_pristine - mu
    return float(np.sqrt(diff @ np.linalg.pinv((cov_pristine + cov) / 2) @ diff))

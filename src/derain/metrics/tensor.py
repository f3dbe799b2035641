"""PSNR and SSIM on batched tensors, for validation during training (CPU or GPU, differentiable).

Inputs are float ``(N, C, H, W)`` tensors in ``[0, data_range]``; outputs are one value per image,
shape ``(N,)``. ``y_channel=True`` compares the unrounded Y of MATLAB's ``rgb2ycbcr`` (BT.601,
studio range), the ``test_y_channel`` convention of BasicSR. SSIM is Wang et al. 2004 with an
11×11 Gaussian window (sigma 1.5) over the valid region, as the MATLAB scripts compute it.

These values track the paper numbers closely but are not them: papers round Y to uint8 (``rain100``)
or downsample before SSIM (``ddn``). For reported numbers use :func:`derain.metrics.psnr_ssim_matlab`
on the saved uint8 images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# MATLAB rgb2ycbcr, first row, for RGB in [0, 1]: Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255.
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0


def rgb_to_y(image: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Unrounded BT.601 Y (MATLAB ``rgb2ycbcr``): ``(N, 3, H, W)`` → ``(N, 1, H, W)``, same scale."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an RGB batch of shape (N, 3, H, W), got {tuple(image.shape)}")
    weights = image.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True) + _Y_OFFSET * data_range


def _prepare(restored: torch.Tensor, clean: torch.Tensor, data_range: float, y_channel: bool):
    if restored.shape != clean.shape or restored.ndim != 4:
        raise ValueError(
            f"restored and clean must be (N, C, H, W) batches of the same shape, "
            f"got {tuple(restored.shape)} and {tuple(clean.shape)}"
        )
    if y_channel:
        return rgb_to_y(restored, data_range), rgb_to_y(clean, data_range)
    return restored, clean


def psnr(
    restored: torch.Tensor, clean: torch.Tensor, data_range: float = 1.0, y_channel: bool = False
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``(N,)``; ``inf`` where an image is reproduced exactly.

    >>> x = torch.rand(2, 3, 8, 8)
    >>> psnr(x, x).tolist()
    [inf, inf]
    """
    restored, clean = _prepare(restored, clean, data_range, y_channel)
    mse = (restored - clean).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(
    restored: torch.Tensor,
    clean: torch.Tensor,
    data_range: float = 1.0,
    y_channel: bool = False,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity per image, ``(N,)``: the mean of the SSIM map over channels and the
    valid region (no padding), so H and W must be at least ``window_size``."""
    restored, clean = _prepare(restored, clean, data_range, y_channel)
    n, c, h, w = restored.shape
    if min(h, w) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size}x{window_size}, got {h}x{w}")
    g = _gaussian_window(window_size, sigma, restored)
    rows, cols = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable 'valid' Gaussian on every map
        flat = x.reshape(-1, 1, *x.shape[-2:])
        return F.conv2d(F.conv2d(flat, cols), rows)

    stats = blur(torch.cat([restored, clean, restored * restored, clean * clean, restored * clean]))
    mu_x, mu_y, xx, yy, xy = stats.view(5, n * c, *stats.shape[-2:])
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    ssim_map = ((2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)) / (
        (mu_xx + mu_yy + c1) * ((xx - mu_xx) + (yy - mu_yy) + c2)
    )
    return ssim_map.view(n, -1).mean(dim=1)


class PSNR(nn.Module):
    """Module form of :func:`psnr`; returns one value per image."""

    def __init__(self, data_range: float = 1.0, y_channel: bool = False) -> None:
        super().__init__()
        self.data_range = data_range
        self.y_channel = y_channel

    def forward(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return psnr(restored, clean, self.data_range, self.y_channel)


class SSIM(nn.Module):
    """Module form of :func:`ssim`; returns one value per image (use ``1 - SSIM`` as a loss)."""

    def __init__(
        self, data_range: float = 1.0, y_channel: bool = False, window_size: int = 11, sigma: float = 1.5
    ) -> None:
        super().__init__()
        self.data_range = data_range
        self.y_channel = y_channel
        self.window_size = window_size
        self.sigma = sigma

    def forward(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return ssim(restored, clean, self.data_range, self.y_channel, self.window_size, self.sigma)

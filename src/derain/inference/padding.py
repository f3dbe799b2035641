"""Padding images to the sizes a model accepts, and the crop that undoes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_size(size: int, multiple: int, min_size: int = 1) -> int:
    """The smallest length >= ``max(size, min_size)`` that is a multiple of ``multiple``."""
    size = max(size, min_size)
    return -(-size // multiple) * multiple


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect", *, min_size: int = 1
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom and right of ``x`` (N, C, H, W) to multiples of ``multiple``.

    Returns the padded tensor and the original (H, W); ``padded[..., :H, :W]`` is ``x``.
    Sides shorter than ``min_size`` are padded up to it as well. Reflect padding needs the
    pad to be shorter than the side, so a tiny image is reflected repeatedly (a 1-pixel side
    is replicated), the same values a mirror-tiling of the image would give.
    """
    if x.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2:]
    x = _pad_side(x, -2, padded_size(height, multiple, min_size), mode)
    x = _pad_side(x, -1, padded_size(width, multiple, min_size), mode)
    return x, (height, width)


def _pad_side(x: torch.Tensor, dim: int, target: int, mode: str) -> torch.Tensor:
    while x.shape[dim] < target:
        size, amount, step_mode = x.shape[dim], target - x.shape[dim], mode
        if mode == "reflect" and size == 1:
            step_mode = "replicate"
        elif mode == "reflect":
            amount = min(amount, size - 1)
        pad = (0, 0, 0, amount) if dim == -2 else (0, amount, 0, 0)
        x = F.pad(x, pad, mode=step_mode)
    return x

"""Running a model on overlapping tiles and blending them without seams.

Memory is bounded by the tile: only one batch of tiles (and the model's features for it)
lives on the model's device; the full-size input, output and weight sum stay where the
input is, usually the CPU.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from .padding import pad_to_multiple

MANY_TILES = 16  # images with at least this many tile batches get a progress bar (progress=None)


def first_output(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The full-resolution restored image: multi-scale models (DMSR) list it first."""
    return output if isinstance(output, torch.Tensor) else output[0]


def run_padded(
    model: nn.Module, x: torch.Tensor, multiple: int = 1, *, min_size: int = 1
) -> torch.Tensor:
    """``model(x)`` on ``x`` reflect-padded to the model's size multiple, cropped back."""
    padded, (height, width) = pad_to_multiple(x, multiple, min_size=min_size)
    return first_output(model(padded))[..., :height, :width]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Origins of tiles of length ``tile`` covering ``size``, ``overlap`` apart; the last is flush.

    ``[0]`` when one tile covers everything; the last tile may overlap its neighbour by
    more than ``overlap`` so that no tile leaves the image.
    """
    if size <= tile:
        return [0]
    return list(range(0, size - tile, tile - overlap)) + [size - tile]


def _ramp(length: int, overlap: int, rising: bool, falling: bool) -> torch.Tensor:
    """1-D blending weight of a tile: linear ramps over ``overlap`` pixels at inner edges.

    Ramps are strictly positive, so every pixel has a non-zero weight sum; edges that touch
    the image border keep weight 1.
    """
    weight = torch.ones(length)
    ramp_len = min(overlap, length // 2)
    if ramp_len > 0:
        ramp = torch.arange(1, ramp_len + 1, dtype=torch.float32) / (ramp_len + 1)
        if rising:
            weight[:ramp_len] = ramp
        if falling:
            weight[length - ramp_len :] = ramp.flip(0)
    return weight


def tiled_forward(
    model: nn.Module,
    x: torch.Tensor,
    tile: int,
    overlap: int,
    multiple: int = 1,
    *,
    min_size: int = 1,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: bool | None = False,
) -> torch.Tensor:
    """Restore ``x`` (N, 3, H, W) tile by tile and blend the overlaps with linear ramps.

    Each ``tile``×``tile`` crop (smaller where the image is) is reflect-padded to
    ``multiple`` and ``min_size``, run on ``device`` (default: ``x``'s) in batches of
    ``batch_size`` tiles, cropped back and accumulated with weights that fall to near zero
    across the ``overlap`` band, then divided by the weight sum. An identity model
    therefore returns ``x`` for any tile, overlap and size. The result is on ``x``'s device
    and dtype. ``progress``: a bar over the tile batches on stderr; ``None`` shows it when
    there are at least :data:`MANY_TILES` of them and stderr is a terminal.
    """
    if x.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else x.device
    height, width = x.shape[-2:]
    tile_h, tile_w = min(tile, height), min(tile, width)
    boxes = [
        (top, left)
        for top in tile_starts(height, tile_h, overlap)
        for left in tile_starts(width, tile_w, overlap)
    ]
    restored = torch.zeros_like(x)
    weight_sum = torch.zeros((1, 1, height, width), dtype=x.dtype, device=x.device)
    batches = x.shape[0] * -(-len(boxes) // batch_size)
    # tqdm's disable=None: shown only on a terminal
    disable = (batches < MANY_TILES or None) if progress is None else not progress
    with tqdm(total=batches, unit="tile", desc="tiles", leave=False, disable=disable) as bar:
        for image in range(x.shape[0]):
            for first in range(0, len(boxes), batch_size):
                batch = boxes[first : first + batch_size]
                tiles = torch.cat(
                    [x[image : image + 1, :, t : t + tile_h, l : l + tile_w] for t, l in batch]
                )
                outputs = run_padded(model, tiles.to(device), multiple, min_size=min_size)
                outputs = outputs.to(x.device, x.dtype)
                for (top, left), output in zip(batch, outputs):
                    weight = torch.outer(
                        _ramp(tile_h, overlap, top > 0, top + tile_h < height),
                        _ramp(tile_w, overlap, left > 0, left + tile_w < width),
                    ).to(x.device, x.dtype)
                    restored[image, :, top : top + tile_h, left : left + tile_w] += output * weight
                    if image == 0:
                        weight_sum[0, 0, top : top + tile_h, left : left + tile_w] += weight
                bar.update()
    return restored.div_(weight_sum)

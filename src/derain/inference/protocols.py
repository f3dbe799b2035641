"""The test-time procedures of the official repositories, to reproduce the papers' numbers.

derain's own inference (:func:`~derain.inference.tiling.tiled_forward`) blends overlapping
tiles; the official scripts do not, and their choices change the outputs slightly, so
reproducing a paper's table needs the paper's procedure. A card names its model's procedure
(``ModelCard.official_protocol``); every procedure takes ``(model, rainy, tile, overlap)``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .padding import pad_to_multiple
from .tiling import first_output, tile_starts

OFFICIAL_WINDOW = 128


def drsformer_official(
    model: nn.Module, rainy: torch.Tensor, tile: int | None = None, overlap: int = 32
) -> torch.Tensor:
    """DRSformer's ``test.py``: reflect pad to a multiple of 8, whole image or uniform tiles.

    With ``tile``, tiles of ``min(tile, H, W)`` (padded sizes) start every ``tile - overlap``
    pixels plus one flush with the bottom/right edge, and overlapping outputs are averaged
    with equal weights. Output clamped to [0, 1] and cropped. (Chen et al., CVPR 2023;
    github.com/cschenxiang/DRSformer)
    """
    padded, (height, width) = pad_to_multiple(rainy, 8)
    if tile is None:
        restored = first_output(model(padded))
    else:
        tile = min(tile, *padded.shape[-2:])
        if tile % 8:
            raise ValueError(f"DRSformer's official tiles must be a multiple of 8, got {tile}")
        if not 0 <= overlap < tile:
            raise ValueError(f"need 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
        restored = torch.zeros_like(padded)
        counts = torch.zeros_like(padded[:, :1])
        for top in tile_starts(padded.shape[-2], tile, overlap):
            for left in tile_starts(padded.shape[-1], tile, overlap):
                window = padded[..., top : top + tile, left : left + tile]
                restored[..., top : top + tile, left : left + tile] += first_output(model(window))
                counts[..., top : top + tile, left : left + tile] += 1
        restored = restored / counts
    return restored.clamp(0, 1)[..., :height, :width]


def windowed_official(
    model: nn.Module,
    rainy: torch.Tensor,
    tile: int | None = None,
    overlap: int = 0,
    *,
    window: int = OFFICIAL_WINDOW,
) -> torch.Tensor:
    """CPRAformer's and DMSR's ``test.py``: 128×128 windows, all in one batch, no blending.

    ``tile`` and ``overlap`` are ignored: the official windows are fixed, and the paper's
    numbers depend on them.

    ``window_partitionx`` cuts the largest top-left grid of whole windows, then windows
    flush with the right edge (grid rows), the bottom edge (grid columns) and the corner;
    the reverse step keeps the grid and fills only the uncovered strips from the edge
    windows. All windows of an image go through the model together, which matters for
    CPRAformer, whose top-k count is shared by the batch. Images smaller than a window
    fail, as they do officially. (github.com/zs1314/DAIT, github.com/zs1314/DMSR)
    """
    batch, _, height, width = rainy.shape
    if height < window or width < window:
        raise ValueError(
            f"the official windowed test needs images of at least {window}x{window}, "
            f"got {width}x{height}"
        )
    grid_h, grid_w = height // window * window, width // window * window
    row_starts = list(range(0, grid_h, window))
    col_starts = list(range(0, grid_w, window))
    boxes = [(t, l) for t in row_starts for l in col_starts]  # the main grid, row-major
    if grid_w < width:
        boxes += [(t, width - window) for t in row_starts]  # right edge
    if grid_h < height:
        boxes += [(height - window, l) for l in col_starts]  # bottom edge
    if grid_w < width and grid_h < height:
        boxes.append((height - window, width - window))  # corner

    restored = torch.empty_like(rainy)
    for image in range(batch):
        windows = torch.cat([rainy[image : image + 1, :, t : t + window, l : l + window] for t, l in boxes])
        outputs = first_output(model(windows))
        # Later windows overwrite only what the grid left uncovered, as window_reversex does.
        for (top, left), output in zip(boxes, outputs):
            keep_top = grid_h if top == height - window and top % window else top
            keep_left = grid_w if left == width - window and left % window else left
            restored[image, :, keep_top : top + window, keep_left : left + window] = output[
                :, keep_top - top :, keep_left - left :
            ]
    return restored.clamp(0, 1)


OfficialProtocol = Callable[[nn.Module, torch.Tensor, "int | None", int], torch.Tensor]

# by the name a card gives in ``official_protocol``
OFFICIAL_PROTOCOLS: dict[str, OfficialProtocol] = {
    "drsformer": drsformer_official,
    "windows": windowed_official,
}

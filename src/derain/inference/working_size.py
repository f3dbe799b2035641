"""Derain a large photo in two passes: at the scale the model learnt rain at, then at full size.

A model trained on photos with a short side of about N pixels has learnt streaks as wide and
as long as rain is at that size. The same rain photographed with two or three times the pixels
is two or three times wider and longer, and such a model only dims it. So on a photo whose
short side exceeds the model's working size, the model first derains a copy shrunk to that
size; the rain layer it removed there (copy minus its result) is enlarged back and subtracted
from the photo, which removes the wide rain while the scene keeps its full-size detail. Thin
streaks that shrinking blurred away are left, so the model then derains that result at full
size, as it would any photo.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

def shrunk_size(height: int, width: int, working_size: int | None) -> tuple[int, int] | None:
    """The (height, width) of the copy the model sees: short side ``working_size``, aspect
    kept; ``None`` when the image is not larger than that (it is derained as it is)."""
    if working_size is None or min(height, width) <= working_size:
        return None
    if height <= width:
        return working_size, round(width * working_size / height)
    return round(height * working_size / width), working_size


def remove_coarse_rain(
    restore: Callable[[torch.Tensor], torch.Tensor], rainy: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``rainy`` (N, 3, H, W) minus the rain that ``restore`` removes from its copy at ``size``,
    clamped to [0, 1]: the first pass.

    Shrinking is antialiased bicubic (no aliasing of thin streaks into the copy); the rain layer
    is enlarged bicubically, which keeps its soft edges.
    """
    small = F.interpolate(rainy, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    rain = small - restore(small).clamp(0, 1).to(small.dtype)
    return (rainy - F.interpolate(rain, size=rainy.shape[-2:], mode="bicubic", align_corners=False)).clamp_(0, 1)

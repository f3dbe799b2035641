"""Write rainy clips (:mod:`derain.data.synth_video`) as videos or frame folders."""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction

from ..data.synth_video import rainy_clip
from .io import Frame, VideoInfo, frame_name, open_writer, read_rgb8


def write_rainy_clip(
    photo: str | os.PathLike,
    rainy_target: str | os.PathLike,
    clean_target: str | os.PathLike | None = None,
    *,
    frames: int,
    width: int,
    height: int,
    fps: Fraction,
    overwrite: bool = False,
    **rain,
) -> None:
    """Write :func:`rainy_clip` of the image file ``photo`` as a video or frame folder, and its
    clean frames too where ``clean_target`` is given; ``rain``: ``preset``, ``seed``, ``motion``."""
    image = read_rgb8(photo)
    info = VideoInfo(width, height, frames, Fraction(fps), 1 / Fraction(fps))
    with contextlib.ExitStack() as stack:
        rainy_writer = stack.enter_context(open_writer(rainy_target, info, overwrite=overwrite))
        clean_writer = stack.enter_context(open_writer(clean_target, info, overwrite=overwrite)) if clean_target else None
        for index, (clean, rainy) in enumerate(rainy_clip(image, frames, height=height, width=width, **rain)):
            frame = Frame(rainy, index, info.time_base, frame_name(index))
            rainy_writer.write(rainy, frame)
            if clean_writer:
                clean_writer.write(clean, frame)

"""Derain a video file or a frame folder, frame by frame, optionally fused over time."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..inference import Deraining
from .io import DEFAULT_CODEC, DEFAULT_CRF, DEFAULT_FPS, TruncatedVideoError, VideoReader, is_frame_folder, open_writer
from .temporal import TemporalFusion


@dataclass(frozen=True)
class VideoResult:
    frames: int
    seconds: float
    audio_dropped: int = 0  # audio streams of the input that a frame folder cannot keep


def derain_video(
    source: str | os.PathLike,
    target: str | os.PathLike,
    derainer: Deraining | Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    temporal: int = 0,
    codec: str = DEFAULT_CODEC,
    crf: int | None = DEFAULT_CRF,
    fps: Fraction = DEFAULT_FPS,
    overwrite: bool = False,
    progress: bool = True,
) -> VideoResult:
    """Derain every frame of ``source`` into ``target`` (video files or folders of frames).

    ``derainer`` defaults to derain's shipped model; ``temporal`` > 0 fuses each output with
    that many previous outputs (:class:`TemporalFusion`); ``fps`` times frame folders.
    ``target`` appears only once complete. Frames go through the model
    ``derainer.batch_size`` at a time (see :class:`~derain.inference.Deraining`).

    Raises:
        VideoError: unreadable input, unwritable output, ``target`` exists without ``overwrite``.
        TruncatedVideoError: the input broke off; the frames before the break were derained
            but ``target`` is not written.
    """
    if temporal < 0:
        raise ValueError(f"temporal must be >= 0 (0: off), got {temporal}")
    derainer = derainer or Deraining()
    # A plain function of one frame (tests, custom filters) is called frame by frame.
    batch_size = getattr(derainer, "batch_size", 1)
    derain_batch = getattr(derainer, "derain_batch", None) or (lambda images: [derainer(image) for image in images])
    fuse = TemporalFusion(temporal) if temporal else None
    started = time.perf_counter()
    with VideoReader(source, fps=fps) as reader:
        with open_writer(target, reader.info, reader.audio, codec=codec, crf=crf, overwrite=overwrite) as writer:
            bar = tqdm(total=reader.info.expected_frames(), unit="frame", desc=Path(source).name, disable=not progress or None)
            batch: list = []  # frames of one video share a size: batch_size per forward pass
            written = [0]

            def flush() -> None:
                for restored, frame in zip(derain_batch([f.image for f in batch]), batch):
                    writer.write(fuse(restored) if fuse else restored, frame)
                    bar.update()
                    written[0] += 1
                batch.clear()

            with bar:
                try:
                    for frame in reader.frames(on_audio=writer.mux_audio):
                        batch.append(frame)
                        if len(batch) >= batch_size:
                            flush()
                except TruncatedVideoError:
                    flush()  # derain what decoded, as one frame at a time would have
                    raise
                flush()
    dropped = len(reader.audio) if is_frame_folder(Path(target)) else 0
    return VideoResult(written[0], time.perf_counter() - started, dropped)

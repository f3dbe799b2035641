"""Make the bundled rainy clip ``src/derain/demo/examples/chelsea_rain.mp4``.

24 frames (2 s at 12 fps, 160x112) of medium synthetic rain falling over ``tests/data/photos/
chelsea.png`` seen by a slowly panning and zooming camera, H.264 with the moov index in front
(so a cut-off copy still decodes up to the cut), and an AAC track of a 440 Hz tone, so that
audio copying can be checked. The clean frames go to ``tests/data/video/chelsea_clean/``.

    python scripts/make_example_clip.py
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from derain.data.synth_video import CameraMotion, rainy_clip
from derain.imageio import read_image

ROOT = Path(__file__).resolve().parent.parent
FRAMES, FPS, WIDTH, HEIGHT = 24, 12, 160, 112
SAMPLE_RATE, TONE_HZ = 16000, 440


def example_clip(photo: np.ndarray):
    """The (clean, rainy) frames of the clip, before encoding."""
    return rainy_clip(photo, FRAMES, height=HEIGHT, width=WIDTH, preset="medium", seed=3, motion=CameraMotion((0.6, 0.0), 0.002))


def main() -> None:
    photo = read_image(ROOT / "tests/data/photos/chelsea.png")
    clip = ROOT / "src/derain/demo/examples/chelsea_rain.mp4"
    with av.open(str(clip), "w", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "20"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for index, (_, rainy) in enumerate(example_clip(photo)):
            frame = av.VideoFrame.from_ndarray(rainy, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = FRAMES * SAMPLE_RATE // FPS
        tone = 0.2 * np.sin(2 * np.pi * TONE_HZ * np.arange(samples) / SAMPLE_RATE).astype(np.float32)
        chunk = audio.codec_context.frame_size
        for start in range(0, samples, chunk):
            piece = np.zeros(chunk, np.float32)
            piece[: len(tone[start : start + chunk])] = tone[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(piece[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    print(f"{clip}: {clip.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()

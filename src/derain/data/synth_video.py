"""Rainy video clips: ``derain.data.synth``'s streaks, falling from frame to frame.

Each layer of :func:`derain.data.synth.sample_params` keeps its angle, length, width and density;
its drops move along the streak direction at a steady speed, ``length / shutter`` per frame (a
streak is the blur of a drop over the exposure, a ``shutter`` fraction of the frame interval).
Drops that fall out of the canvas are replaced by new ones entering at random columns, so the
density holds. The scene is a photo, still or seen by a camera that pans and zooms over it.
The still images of ``derain.data.synth`` (and the derain-synth benchmark) are not changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image
from scipy.signal import fftconvolve

from .synth import PRESET_NAMES, RainParams, StreakLayer, _seed_count, composite, sample_params, streak_kernel

# Effects of derain.data.synth's rain families beyond streaks and veil: drawn for one still
# image, not yet made to move from frame to frame.
_STILL_EFFECTS = ("drops", "splashes", "fog", "exposure", "camera")


def _still_effects(params: RainParams) -> list[str]:
    return [name for name in _STILL_EFFECTS if getattr(params, name) not in (None, 0, 1.0)]


def animated_presets() -> list[str]:
    """The rain presets and families made only of streaks and veil: those a clip can animate."""
    return [name for name in PRESET_NAMES if name != "mixed" and not _still_effects(sample_params(name, 0))]


@dataclass(frozen=True)
class CameraMotion:
    """A camera over a photo: ``pan`` in photo pixels per frame (x, y); ``zoom`` per frame (0.01 = 1 % closer)."""

    pan: tuple[float, float] = (0.0, 0.0)
    zoom: float = 0.0


class _FallingLayer:
    """The drops of one streak layer on a canvas with a kernel's margin, moved frame by frame."""

    def __init__(self, layer: StreakLayer, height: int, width: int, shutter: float):
        self.kernel = streak_kernel(layer, height)
        ky, kx = self.kernel.shape
        self.canvas = (height + ky - 1, width + kx - 1)
        self.size = (height, width)
        self.rng = np.random.default_rng(layer.seed)
        self.amplitude = layer.amplitude
        count = self.rng.poisson(_seed_count(layer, *self.canvas, height))
        self.rows = self.rng.uniform(0, self.canvas[0], count)
        self.cols = self.rng.uniform(0, self.canvas[1], count)
        self.amplitudes = self._amplitudes(count)
        speed = layer.length * height / shutter
        angle = np.radians(layer.angle)
        self.step = (speed * np.cos(angle), speed * np.sin(angle))  # (down, right) px per frame

    def _amplitudes(self, count: int) -> np.ndarray:
        return self.amplitude * self.rng.uniform(0.5, 1.0, count)

    def advance(self) -> None:
        self.rows += self.step[0]
        self.cols = (self.cols + self.step[1]) % self.canvas[1]
        fallen = self.rows >= self.canvas[0]
        count = int(fallen.sum())
        # New drops enter above the canvas, as far above as the old ones fell below it.
        self.rows[fallen] -= self.canvas[0]
        self.cols[fallen] = self.rng.uniform(0, self.canvas[1], count)
        self.amplitudes[fallen] = self._amplitudes(count)

    def render(self) -> np.ndarray:
        """Streak intensity (H, W) float64, as ``render_rain`` draws one layer."""
        seeds = np.zeros(self.canvas)
        np.add.at(seeds, (self.rows.astype(int), self.cols.astype(int)), self.amplitudes)
        ky, kx = self.kernel.shape
        streaks = fftconvolve(seeds, self.kernel)[ky - 1 : ky - 1 + self.size[0], kx - 1 : kx - 1 + self.size[1]]
        return np.clip(streaks, 0, 1)


def camera_view(photo: np.ndarray, height: int, width: int, frame: int, motion: CameraMotion) -> np.ndarray:
    """Frame ``frame`` of a camera over ``photo`` (uint8 RGB): the largest centred crop of the
    output's aspect, panned and zoomed, resampled to ``height x width`` (Lanczos)."""
    photo_h, photo_w = photo.shape[:2]
    scale = min(photo_w / width, photo_h / height) / (1 + motion.zoom) ** frame
    crop_w, crop_h = width * scale, height * scale
    centre_x = np.clip(photo_w / 2 + motion.pan[0] * frame, crop_w / 2, photo_w - crop_w / 2)
    centre_y = np.clip(photo_h / 2 + motion.pan[1] * frame, crop_h / 2, photo_h - crop_h / 2)
    box = (centre_x - crop_w / 2, centre_y - crop_h / 2, centre_x + crop_w / 2, centre_y + crop_h / 2)
    return np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.LANCZOS, box=box))


def rainy_clip(
    photo: np.ndarray,
    frames: int,
    *,
    height: int,
    width: int,
    preset: str = "medium",
    seed: int = 0,
    motion: CameraMotion = CameraMotion(),
    shutter: float = 0.5,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``frames`` (clean, rainy) uint8 RGB pairs (H, W, 3) of rain falling over ``photo``.

    The same seed gives the same clip. ``shutter`` is the exposure as a fraction of the frame
    interval: a drop falls ``length / shutter`` per frame.
    """
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"rainy_clip expects an (H, W, 3) uint8 photo, got {photo.shape} {photo.dtype}")
    if not 0 < shutter <= 1:
        raise ValueError(f"shutter must be in (0, 1], got {shutter}")
    params: RainParams = sample_params(preset, seed)
    effects = _still_effects(params)
    if effects:
        raise ValueError(
            f"rain {preset!r} adds {', '.join(effects)}, which rainy clips do not animate; "
            f"use one of {', '.join(animated_presets())}"
        )
    layers = [_FallingLayer(layer, height, width, shutter) for layer in params.layers]
    for index in range(frames):
        clean = camera_view(photo, height, width, index, motion)
        clear = np.ones((height, width))
        for layer in layers:
            clear *= 1 - layer.render()  # layers combined by Screen, as in render_rain
            layer.advance()
        rain = (1 - clear).astype(np.float32)
        rainy = composite(clean.astype(np.float32) / 255, rain, params)
        yield clean, np.round(rainy * 255).astype(np.uint8)


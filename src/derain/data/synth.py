"""Procedural rain streaks, calibrated against the standard synthetic benchmarks.

The model follows JORDER (Yang et al., CVPR 2017), O = a(B + sum_t S_t R) + (1 - a)A, and the
Photoshop recipe behind Rain800/Rain1200/Rain1400: sparse bright seeds, motion-blurred into
oriented streaks, several layers at different angles and scales, Screen-blended onto the photo,
and an atmospheric veil in heavy rain. Each layer is drawn as sparse seeds convolved (by FFT)
with a tapered line kernel whose cross-section is a Gaussian of the streak width, scaled so a
lone streak peaks at its seed amplitude. Lengths and widths are in units of the image height
(widths are quoted in pixels at ``REFERENCE_HEIGHT``, the 321-px height of BSDS images used by
Rain100/Rain200), so a preset looks the same at any resolution.

``sample_params`` draws every parameter from a seed; ``render_rain`` (NumPy, the reference used
by derain-synth) and ``render_rain_torch`` (for on-the-fly training, CPU or GPU) draw the
streaks from those parameters; ``composite`` / ``composite_torch`` blend them onto a clean image.
The rainy image is never darker than the clean one. Presets were calibrated so their
statistics (``rain_statistics``) fall inside the ranges measured on Rain100H/Rain100L samples.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

REFERENCE_HEIGHT = 321  # BSDS images (481x321) of Rain100L/H and Rain200L/H


@dataclass(frozen=True)
class RainPreset:
    """Ranges from which ``sample_params`` draws; widths in pixels at ``REFERENCE_HEIGHT``."""

    name: str
    layers: tuple[int, int]
    density: tuple[float, float]  # probability of a seed per width x width cell, per layer
    length: tuple[float, float]  # streak length, x image height
    width: tuple[float, float]  # streak width (FWHM), px at REFERENCE_HEIGHT
    amplitude: tuple[float, float]  # peak brightness of a lone streak
    angle: float  # |base angle from vertical|, degrees
    jitter: float  # |per-layer deviation from the base angle|, degrees
    veil: tuple[float, float]  # 1 - t of the veil O' = t O + (1 - t) A
    veil_light: tuple[float, float] = (0.75, 0.95)  # A


PRESETS = {
    "light": RainPreset("light", (1, 1), (0.012, 0.028), (0.04, 0.10), (1.0, 1.3), (0.20, 0.40), 20, 2, (0.0, 0.0)),
    "medium": RainPreset("medium", (1, 2), (0.008, 0.020), (0.06, 0.15), (1.0, 1.5), (0.35, 0.65), 25, 5, (0.0, 0.08)),
    "heavy": RainPreset("heavy", (2, 4), (0.003, 0.006), (0.10, 0.25), (1.2, 2.0), (0.75, 1.0), 20, 8, (0.22, 0.36)),
}

# Statistics of the real benchmark samples (shared/data/README.md): the median of
# ``rain_statistics`` over a set of photos must fall inside these. Light and medium use the range
# the reference recipe produced around the single Rain100L-like sample; heavy's brightened share
# allows 0.96 (measured 0.65-0.91) because a veil strong enough for the measured offset brightens
# every dark pixel, and photos darker than BSDS have more of them.
MEASURED_RANGES = {
    "light": {"brightened": (0.06, 0.26), "mean_brightening": (22.0, 36.0), "offset": (0.0, 3.0)},
    "medium": {"brightened": (0.14, 0.75), "mean_brightening": (28.0, 50.0), "offset": (0.0, 25.0)},
    "heavy": {"brightened": (0.65, 0.96), "mean_brightening": (56.0, 95.0), "offset": (39.0, 85.0)},
}


@dataclass(frozen=True)
class StreakLayer:
    angle: float  # degrees from vertical, positive leans right going down
    length: float  # x image height
    width: float  # px at REFERENCE_HEIGHT
    density: float
    amplitude: float
    seed: int  # seeds the positions and amplitudes of this layer's streaks


@dataclass(frozen=True)
class RainParams:
    """Every drawn parameter of one rainy image; ``to_dict`` is one line of the JSONL manifest."""

    preset: str
    seed: int
    layers: tuple[StreakLayer, ...]
    tint: tuple[float, float, float]
    veil: float
    veil_light: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RainParams:
        fields = dict(data)
        fields["layers"] = tuple(StreakLayer(**layer) for layer in data["layers"])
        fields["tint"] = tuple(data["tint"])
        return cls(**fields)


def get_preset(preset: str | RainPreset) -> RainPreset:
    if isinstance(preset, RainPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown rain preset {preset!r}: expected one of {sorted(PRESETS)}") from None


def sample_params(preset: str | RainPreset, seed: int) -> RainParams:
    """Draw the parameters of one rainy image; the same seed gives the same parameters."""
    spec = get_preset(preset)
    rng = np.random.default_rng(seed)
    base = rng.uniform(-spec.angle, spec.angle)
    layers = []
    for _ in range(int(rng.integers(spec.layers[0], spec.layers[1] + 1))):
        layers.append(
            StreakLayer(
                angle=float(base + rng.uniform(-spec.jitter, spec.jitter)),
                length=float(rng.uniform(*spec.length)),
                width=float(rng.uniform(*spec.width)),
                density=float(rng.uniform(*spec.density)),
                amplitude=float(rng.uniform(*spec.amplitude)),
                seed=int(rng.integers(2**63)),
            )
        )
    tint = tuple(float(c) for c in rng.uniform(0.92, 1.0, size=3))
    veil = float(rng.uniform(*spec.veil)) if spec.veil[1] > 0 else 0.0
    veil_light = float(rng.uniform(*spec.veil_light))
    return RainParams(spec.name, int(seed), tuple(layers), tint, veil, veil_light)


def streak_kernel(layer: StreakLayer, scale_height: float) -> np.ndarray:
    """Tapered line of ``layer.length * scale_height`` px at ``layer.angle``, peak 1 (float64)."""
    length = max(layer.length * scale_height, 1.0)
    sigma = max(layer.width * scale_height / REFERENCE_HEIGHT, 0.5) / 2.355  # FWHM -> sigma
    theta = math.radians(layer.angle)
    along = np.array([math.sin(theta), math.cos(theta)])  # (x, y), y pointing down
    half = length / 2
    radius_x = math.ceil(abs(along[0]) * half + 3 * sigma)
    radius_y = math.ceil(abs(along[1]) * half + 3 * sigma)
    y, x = np.mgrid[-radius_y : radius_y + 1, -radius_x : radius_x + 1].astype(np.float64)
    t = (x * along[0] + y * along[1]) / half
    across = x * along[1] - y * along[0]
    kernel = np.clip(1 - t**2, 0, None) * np.exp(-(across**2) / (2 * sigma**2))
    return kernel / kernel.max()


def _seed_count(layer: StreakLayer, height: int, width: int, scale_height: float) -> int:
    cell = max(layer.width * scale_height / REFERENCE_HEIGHT, 1.0)
    return int(round(layer.density * height * width / cell**2))


def _layer_seeds(layer: StreakLayer, height: int, width: int, scale_height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed rows, columns and amplitudes over a ``height x width`` canvas."""
    rng = np.random.default_rng(layer.seed)
    count = rng.poisson(_seed_count(layer, height, width, scale_height))
    rows = rng.integers(0, height, count)
    cols = rng.integers(0, width, count)
    amplitudes = layer.amplitude * rng.uniform(0.5, 1.0, count)
    return rows, cols, amplitudes


def render_rain(params: RainParams, height: int, width: int, *, scale_height: float | None = None) -> np.ndarray:
    """The rain layer (H, W) float32 in [0, 1] for an image of ``height x width`` (NumPy).

    ``scale_height`` is the height the lengths and widths refer to (default ``height``); pass
    the full photo's height when raining a crop of it.
    """
    scale_height = float(scale_height or height)
    clear = np.ones((height, width))
    for layer in params.layers:
        kernel = streak_kernel(layer, scale_height)
        ky, kx = kernel.shape
        # Seeds cover a margin of one kernel so streaks enter from beyond the borders; the
        # linear (padded) FFT convolution then has no wrap-around.
        canvas = (height + ky - 1, width + kx - 1)
        rows, cols, amplitudes = _layer_seeds(layer, *canvas, scale_height)
        seeds = np.zeros(canvas)
        np.add.at(seeds, (rows, cols), amplitudes)
        shape = (canvas[0] + ky - 1, canvas[1] + kx - 1)
        fft_shape = tuple(_fast_length(n) for n in shape)
        streaks = np.fft.irfft2(np.fft.rfft2(seeds, fft_shape) * np.fft.rfft2(kernel, fft_shape), fft_shape)
        streaks = streaks[ky - 1 : ky - 1 + height, kx - 1 : kx - 1 + width]
        clear *= 1 - np.clip(streaks, 0, 1)  # layers combined by Screen
    return (1 - clear).astype(np.float32)


def composite(clean: np.ndarray, rain: np.ndarray, params: RainParams) -> np.ndarray:
    """Blend a rain layer onto a clean float image (H, W, 3) in [0, 1]; returns float32.

    Screen blend of the tinted rain, then the veil O' = t O + (1 - t) A, kept only where it
    brightens: a bright sky above A is not darkened, so rainy >= clean everywhere.
    """
    tinted = rain[..., None] * np.asarray(params.tint, dtype=np.float32)
    rainy = 1 - (1 - clean) * (1 - tinted)
    if params.veil > 0:
        rainy = np.maximum(rainy, (1 - params.veil) * rainy + params.veil * params.veil_light)
    return np.clip(rainy, 0, 1).astype(np.float32)


def add_rain(clean: np.ndarray, preset: str | RainPreset, seed: int) -> tuple[np.ndarray, np.ndarray, RainParams]:
    """Rain on a uint8 RGB image (H, W, 3): returns (rainy uint8, rain layer float32, params)."""
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"add_rain expects an (H, W, 3) uint8 image, got {clean.shape} {clean.dtype}")
    params = sample_params(preset, seed)
    rain = render_rain(params, *clean.shape[:2])
    rainy = composite(clean.astype(np.float32) / 255, rain, params)
    return np.round(rainy * 255).astype(np.uint8), rain, params


def rain_statistics(rainy: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """The statistics of ``shared/data/README.md`` for one uint8 pair (H, W, 3).

    On the per-pixel channel mean of rainy - clean (8-bit units): ``brightened`` is the share
    above 15, ``mean_brightening`` their mean, ``offset`` the median, ``darker`` the share below
    -15 (0 for real benchmarks).
    """
    diff = rainy.astype(np.float64).mean(axis=2) - clean.astype(np.float64).mean(axis=2)
    bright = diff > 15
    return {
        "brightened": float(bright.mean()),
        "mean_brightening": float(diff[bright].mean()) if bright.any() else 0.0,
        "offset": float(np.median(diff)),
        "darker": float((diff < -15).mean()),
    }


def render_rain_torch(
    params: RainParams,
    height: int,
    width: int,
    *,
    scale_height: float | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``render_rain`` in torch, (H, W) float32 on ``device``.

    Same kernels and seed statistics; the seed positions come from a ``torch.Generator`` seeded
    with each layer's seed, so the streaks differ from the NumPy rendering of the same params.
    Use this per sample in training workers; derain-synth uses the NumPy reference.
    """
    scale_height = float(scale_height or height)
    clear = torch.ones(height, width, device=device)
    for layer in params.layers:
        kernel = torch.from_numpy(streak_kernel(layer, scale_height)).float().to(device)
        ky, kx = kernel.shape
        canvas = (height + ky - 1, width + kx - 1)
        generator = torch.Generator().manual_seed(layer.seed % 2**63)
        count = int(torch.poisson(torch.tensor(float(_seed_count(layer, *canvas, scale_height))), generator=generator))
        index = torch.randint(0, canvas[0] * canvas[1], (count,), generator=generator)
        amplitudes = layer.amplitude * (0.5 + 0.5 * torch.rand(count, generator=generator))
        seeds = torch.zeros(canvas[0] * canvas[1]).index_add_(0, index, amplitudes).view(canvas).to(device)
        shape = (canvas[0] + ky - 1, canvas[1] + kx - 1)
        streaks = torch.fft.irfft2(torch.fft.rfft2(seeds, shape) * torch.fft.rfft2(kernel, shape), shape)
        streaks = streaks[ky - 1 : ky - 1 + height, kx - 1 : kx - 1 + width]
        clear = clear * (1 - streaks.clamp(0, 1))
    return 1 - clear


def composite_torch(clean: torch.Tensor, rain: torch.Tensor, params: RainParams) -> torch.Tensor:
    """``composite`` for a float tensor (3, H, W) or (N, 3, H, W) in [0, 1] and rain (H, W)."""
    tint = torch.tensor(params.tint, dtype=clean.dtype, device=clean.device).view(3, 1, 1)
    rainy = 1 - (1 - clean) * (1 - rain.to(clean) * tint)
    if params.veil > 0:
        rainy = torch.maximum(rainy, (1 - params.veil) * rainy + params.veil * params.veil_light)
    return rainy.clamp(0, 1)


def add_rain_torch(
    clean: torch.Tensor,
    preset: str | RainPreset,
    seed: int,
    *,
    scale_height: float | None = None,
) -> tuple[torch.Tensor, RainParams]:
    """Rain on a float image tensor (3, H, W) in [0, 1]: returns (rainy, params)."""
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"add_rain_torch expects a (3, H, W) tensor, got {tuple(clean.shape)}")
    params = sample_params(preset, seed)
    rain = render_rain_torch(params, clean.shape[1], clean.shape[2], scale_height=scale_height, device=clean.device)
    return composite_torch(clean, rain, params), params


def training_degradations(
    rainy: torch.Tensor,
    generator: torch.Generator,
    *,
    noise: float = 0.0,
    blur: float = 0.0,
    jpeg_quality: int | None = None,
) -> torch.Tensor:
    """Optional camera-like extras for training inputs (3, H, W); all off by default.

    ``noise``: std of Gaussian sensor noise; ``blur``: sigma in px of a slight Gaussian blur;
    ``jpeg_quality``: re-encode through JPEG (Pillow) at this quality.
    """
    out = rainy
    if blur > 0:
        radius = math.ceil(3 * blur)
        taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=out.dtype) ** 2) / (2 * blur**2))
        taps = (taps / taps.sum()).to(out.device)
        padded = torch.nn.functional.pad(out[None], (radius, radius, radius, radius), mode="reflect")
        out = torch.nn.functional.conv2d(padded, taps.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        out = torch.nn.functional.conv2d(out, taps.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=generator).to(out)
    out = out.clamp(0, 1)
    if jpeg_quality is not None:
        from PIL import Image

        array = (out.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=jpeg_quality)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
        out = torch.from_numpy(decoded).permute(2, 0, 1).to(rainy)
    return out


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft handles fastest."""
    best = 2 ** math.ceil(math.log2(n))
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35 * 2 ** max(0, math.ceil(math.log2(n / power35)))
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best

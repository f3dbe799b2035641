"""Synthetic pairs from clean photos, and derain-synth, derain's own fixed benchmark.

``make_pairs`` rains on every image of a folder and writes the canonical ``input/`` + ``target/``
layout with a ``rain.jsonl`` manifest (one line per pair: name, source, every drawn parameter;
the preset is the density label). Seeds are derived from (seed, photo stem, index), so a pair
does not change when other photos are added.

derain-synth is made from the clean-photo corpus (``derain.data.photos``): the test photos give
light/medium/heavy test pairs and a held-out pair per rain family (``families/``), the train
photos light/medium/heavy training pairs, all at fixed seeds, with
photos resized so the shorter side is ``BENCHMARK_SHORT_SIDE`` (close to the 321 x 481 of
Rain100/Rain200). ``data/derain-synth.sha256`` in the repository records the file checksums, so
any change to the generator is noticed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..imageio import read_rgb8, write_image
from .pairing import list_images
from .synth import FAMILIES, PRESET_NAMES, PRESETS, synthesize

BENCHMARK_SHORT_SIDE = 480
BENCHMARK_SEED = 2024
BENCHMARK_SPLITS = {"test": "test", "train": "train"}  # benchmark split -> corpus split


def pair_seed(seed: int, stem: str, index: int) -> int:
    """A 63-bit seed from (seed, stem, index), independent of which other photos exist."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stem}/{index}".encode()).digest()[:8], "little") >> 1


def make_pairs(
    clean_dir: str | Path,
    out: str | Path,
    *,
    preset: str,
    per_image: int = 1,
    seed: int = 0,
    short_side: int | None = None,
    vary_scenes: bool = False,
    scene_lines: bool = False,
) -> int:
    """Write ``per_image`` rainy versions of every image in ``clean_dir``; returns the pair count.

    ``out/input/<stem>_<k>.png``, ``out/target/<stem>_<k>.png`` and ``out/rain.jsonl``.
    ``preset`` is any preset or family of :mod:`derain.data.synth`, or ``mixed``.
    ``short_side`` resizes the clean photos first (Lanczos) so their shorter side has that length.
    ``vary_scenes`` (training data) draws for each pair a scale, an exposure and colour change,
    and now and then a blurred, low-texture version of the photo (:func:`vary_scene`), so the
    model learns the rain rather than the scenes. ``scene_lines`` draws thin straight structures
    into the clean photo before the rain (:func:`add_scene_lines`), so both sides of a pair have them.
    """
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown rain preset {preset!r}: expected one of {sorted(PRESET_NAMES)}")
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1, got {per_image}")
    sources = list_images(clean_dir)
    if not sources:
        raise ValueError(f"{clean_dir}: no images")
    out = Path(out)
    (out / "input").mkdir(parents=True, exist_ok=True)
    (out / "target").mkdir(exist_ok=True)
    with (out / "rain.jsonl").open("w", encoding="utf-8") as manifest:
        for source in sources:
            photo = read_rgb8(source)
            if short_side:
                photo = _resize_short_side(photo, short_side)
            for k in range(per_image):
                name = f"{source.stem}_{k}"
                this_seed = pair_seed(seed, source.stem, k)
                clean, scene = vary_scene(photo, this_seed) if vary_scenes else (photo, {})
                if scene_lines:
                    clean, lines = add_scene_lines(clean, this_seed)
                    scene = {**scene, **lines}
                rainy, target, params = synthesize(clean, preset, this_seed)
                write_image(out / "input" / f"{name}.png", rainy)
                write_image(out / "target" / f"{name}.png", target)
                line = {"name": name, "source": source.name, "label": params.preset, **scene, **params.to_dict()}
                manifest.write(json.dumps(line, sort_keys=True) + "\n")
    return len(sources) * per_image


def vary_scene(photo: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """A scene variant of a uint8 photo for training: a random crop of 40-100 % of each side, an
    exposure gain, a gamma and a saturation change, and in one case out of eight a strong blur
    (a low-texture background, where rain is all there is to see). Returns (image, what was drawn)."""
    rng = np.random.default_rng([seed, 3])
    height, width = photo.shape[:2]
    crop = float(rng.uniform(0.4, 1.0))
    h, w = max(64, round(height * crop)), max(64, round(width * crop))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    image = photo[top : top + h, left : left + w].astype(np.float32) / 255
    gain, gamma, saturation = float(rng.uniform(0.7, 1.3)), float(rng.uniform(0.8, 1.25)), float(rng.uniform(0.6, 1.3))
    gray = image.mean(axis=2, keepdims=True)
    image = np.clip(gray + saturation * (image - gray), 0, 1)
    image = np.clip(gain * image**gamma, 0, 1)
    blur = float(rng.uniform(4, 12)) if rng.random() < 0.125 else 0.0
    if blur:
        image = gaussian_filter(image, sigma=(blur, blur, 0))
    drawn = {"crop": [top, left, h, w], "gain": gain, "gamma": gamma, "saturation": saturation, "blur": blur}
    return np.round(image * 255).astype(np.uint8), drawn


def add_scene_lines(photo: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """1-6 thin straight structures drawn into a uint8 photo: bright or dark, some yellow, some
    dashed, at any angle (road markings, wires, poles, lettering strokes). A model trained only on
    rain takes every thin bright line for a streak and dims road markings; pairs whose clean side
    has such lines teach it what to keep. Returns (image, what was drawn)."""
    rng = np.random.default_rng([seed, 4])
    height, width = photo.shape[:2]
    short = min(height, width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = photo.astype(np.float32) / 255
    count = int(rng.integers(1, 7))
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        angle = rng.uniform(0, np.pi)
        half_length, half_width = rng.uniform(0.05, 0.3) * short, rng.uniform(0.6, 2.0)
        colour = rng.uniform(0.8, 1.0, 3) if rng.random() < 0.7 else rng.uniform(0.0, 0.2, 3)
        if rng.random() < 0.2:  # yellow road paint
            colour = colour * np.array([1.0, 0.85, 0.25])
        along = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        across = (y - cy) * np.cos(angle) - (x - cx) * np.sin(angle)
        # antialiased: coverage falls from 1 to 0 over the pixel at each edge
        mask = np.clip(half_width + 0.5 - np.abs(across), 0, 1) * np.clip(half_length + 0.5 - np.abs(along), 0, 1)
        if rng.random() < 0.3:  # dashed, as lane markings
            period = rng.uniform(0.03, 0.1) * short
            mask *= (along % period) < 0.6 * period
        opacity = (rng.uniform(0.6, 1.0) * mask)[..., None]
        image = image * (1 - opacity) + opacity * colour.astype(np.float32)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), {"scene_lines": count}


def _resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def build_benchmark(photos: str | Path, out: str | Path) -> dict[str, int]:
    """Build derain-synth from a photo corpus: ``out/{test,train}/{light,medium,heavy}/`` and the
    held-out ``out/families/<family>/``: the test photos under each rain family of
    :data:`derain.data.synth.FAMILIES` (split added later; the preset folders are unchanged).

    Built in a temporary folder beside ``out`` and renamed at the end; returns pairs per folder.
    """
    photos, out = Path(photos), Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    counts = {}
    try:
        for split, corpus_split in BENCHMARK_SPLITS.items():
            for number, preset in enumerate(PRESETS):
                folder = f"{split}/{preset}"
                seed = BENCHMARK_SEED + 10 * number + (split == "train")
                counts[folder] = make_pairs(photos / corpus_split, staging / folder, preset=preset, seed=seed, short_side=BENCHMARK_SHORT_SIDE)
        for number, family in enumerate(FAMILIES):
            folder = f"families/{family}"
            seed = BENCHMARK_SEED + 1000 + 10 * number
            counts[folder] = make_pairs(photos / "test", staging / folder, preset=family, seed=seed, short_side=BENCHMARK_SHORT_SIDE)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


def checksums(folder: str | Path) -> str:
    """``sha256sum``-format lines for every file under ``folder``, sorted by relative path."""
    folder = Path(folder)
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder).as_posix()}")
    return "\n".join(lines) + "\n"

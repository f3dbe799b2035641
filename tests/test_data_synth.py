"""Synthetic rain: calibration against the measured benchmark statistics, determinism, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain.cli import data as data_cli
from derain.data import synth

PHOTOS = sorted((Path(__file__).parent / "data" / "photos").glob("*.png"))


@pytest.fixture(scope="module")
def photos():
    return [np.asarray(Image.open(p).convert("RGB")) for p in PHOTOS]


@pytest.mark.parametrize("preset", sorted(synth.PRESETS))
def test_preset_statistics_in_measured_ranges(preset, photos):
    stats = [synth.rain_statistics(synth.add_rain(photo, preset, seed)[0], photo) for photo in photos for seed in range(3)]
    for key, (low, high) in synth.MEASURED_RANGES[preset].items():
        median = float(np.median([s[key] for s in stats]))
        assert low <= median <= high, f"{preset} {key}: median {median:.3f} outside [{low}, {high}]"
    assert max(s["darker"] for s in stats) == 0.0


def test_presets_ordered_by_strength(photos):
    def brightened(preset):
        return np.median([synth.rain_statistics(synth.add_rain(p, preset, 7)[0], p)["brightened"] for p in photos])

    assert brightened("light") < brightened("medium") < brightened("heavy")


def test_rainy_never_darker_than_clean_even_under_the_veil():
    sky = np.full((64, 96, 3), 250, np.uint8)  # brighter than any veil light A
    rainy, rain, params = synth.add_rain(sky, "heavy", 3)
    assert params.veil > 0 and (rainy >= sky).all()
    assert rain.shape == (64, 96) and rain.dtype == np.float32 and 0 <= rain.min() and rain.max() <= 1


def test_same_seed_same_bytes_other_seed_differs(photos):
    first, _, params = synth.add_rain(photos[0], "medium", 11)
    again, _, params_again = synth.add_rain(photos[0], "medium", 11)
    other, _, _ = synth.add_rain(photos[0], "medium", 12)
    assert first.tobytes() == again.tobytes() and params == params_again
    assert first.tobytes() != other.tobytes()
    assert synth.RainParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params


def test_parameters_scale_with_image_height():
    # Widths below one pixel are clamped, so compare two heights where streaks are >= 1 px wide.
    small, large = np.full((321, 481, 3), 80, np.uint8), np.full((642, 962, 3), 80, np.uint8)
    share = [np.median([synth.rain_statistics(synth.add_rain(img, "medium", s)[0], img)["brightened"] for s in range(4)]) for img in (small, large)]
    assert share[1] == pytest.approx(share[0], rel=0.35)


def test_streak_kernel_is_a_tapered_line_at_the_angle():
    layer = synth.StreakLayer(angle=0.0, length=0.2, width=1.0, density=0.01, amplitude=1.0, seed=0)
    kernel = synth.streak_kernel(layer, 100)
    assert kernel.max() == 1.0 and kernel.shape[0] > 4 * kernel.shape[1]  # vertical, 20 px long
    centre = kernel.shape[0] // 2
    assert kernel[centre].argmax() == kernel.shape[1] // 2 and kernel[1, kernel.shape[1] // 2] < 0.3  # tapered ends
    tilted = synth.streak_kernel(synth.StreakLayer(30.0, 0.2, 1.0, 0.01, 1.0, 0), 100)
    rows, cols = np.nonzero(tilted > 0.5)
    assert np.polyfit(rows, cols, 1)[0] == pytest.approx(np.tan(np.radians(30)), abs=0.05)  # leans right going down


def test_torch_rain_matches_numpy_statistics(photos):
    photo = photos[1]
    clean = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255
    for preset in synth.PRESETS:
        rainy, params = synth.add_rain_torch(clean, preset, 5)
        assert (rainy >= clean - 1e-6).all() and params == synth.sample_params(preset, 5)
        rainy8 = (rainy.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ours, theirs = synth.rain_statistics(rainy8, photo), synth.rain_statistics(synth.add_rain(photo, preset, 5)[0], photo)
        assert ours["brightened"] == pytest.approx(theirs["brightened"], abs=0.1)
    again, _ = synth.add_rain_torch(clean, "heavy", 5)
    assert torch.equal(again, synth.add_rain_torch(clean, "heavy", 5)[0])


def test_training_degradations_off_by_default_and_applied_when_asked():
    rainy = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    assert torch.equal(synth.training_degradations(rainy, generator), rainy)
    degraded = synth.training_degradations(rainy, generator, noise=0.02, blur=0.8, jpeg_quality=50)
    assert degraded.shape == rainy.shape and 0.01 < (degraded - rainy).abs().mean() < 0.3


def test_unknown_preset_named():
    with pytest.raises(ValueError, match="'drizzle'"):
        synth.sample_params("drizzle", 0)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers())
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_synth_command_writes_pairs_and_manifest(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    for photo in PHOTOS[:2]:
        Image.open(photo).crop((0, 0, 96, 64)).save(clean / photo.name)
    for out in ("a", "b"):
        assert run_cli("synth", "--clean", str(clean), "--out", str(tmp_path / out), "--preset", "light", "--per-image", "2", "--seed", "4") == 0
    names = sorted(p.name for p in (tmp_path / "a" / "input").iterdir())
    assert names == sorted(f"{p.stem}_{k}.png" for p in PHOTOS[:2] for k in range(2))
    assert names == sorted(p.name for p in (tmp_path / "a" / "target").iterdir())
    lines = [json.loads(line) for line in (tmp_path / "a" / "rain.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {line["label"] for line in lines} == {"light"} and all(line["layers"] for line in lines)
    for name in names:
        assert (tmp_path / "a" / "input" / name).read_bytes() == (tmp_path / "b" / "input" / name).read_bytes()
    assert run_cli("synth", "--clean", str(clean), "--out", str(tmp_path / "c"), "--preset", "light", "--seed", "5") == 0
    assert (tmp_path / "c" / "input" / names[0]).read_bytes() != (tmp_path / "a" / "input" / names[0]).read_bytes()

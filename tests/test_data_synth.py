"""Synthetic rain: calibration against the measured benchmark statistics, determinism, CLI."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
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
    with pytest.raises(ValueError, match="'sleet'"):
        synth.sample_params("sleet", 0)


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


# --- the rain families beyond the three presets ------------------------------------------------

BENCHMARK_HEIGHT = synth.REFERENCE_HEIGHT


@pytest.fixture(scope="module")
def benchmark_sized(photos):
    """The test photos at the 321-px height of Rain100/Rain200, where the README's figures were measured."""
    from derain.data.benchmark import _resize_short_side

    return [_resize_short_side(photo, BENCHMARK_HEIGHT) for photo in photos]


def _median_statistics(photos, preset, seeds=range(3)):
    rows = []
    for photo in photos:
        for seed in seeds:
            rainy, target, _ = synth.synthesize(photo, preset, seed)
            row = synth.rain_statistics(rainy, target) | synth.streak_statistics(rainy, target)
            rows.append(row | {"angle": abs(row["angle"])})
    return {key: float(np.median([row[key] for row in rows])) for key in rows[0]}


@pytest.mark.parametrize("family", sorted(synth.FAMILY_RANGES))
def test_benchmark_families_match_published_statistics(family, benchmark_sized):
    stats = _median_statistics(benchmark_sized, family)
    for key, (low, high) in synth.FAMILY_RANGES[family].items():
        assert low <= stats[key] <= high, f"{family} {key}: median {stats[key]:.3f} outside [{low}, {high}]"
    assert stats["darker"] == 0.0


def test_families_differ_where_the_benchmarks_do(benchmark_sized):
    heavy, jorder, ddn = (_median_statistics(benchmark_sized, name) for name in ("heavy", "jorder", "ddn"))
    assert jorder["crossing"] > 3 * heavy["crossing"]  # an X pattern, not one base angle
    assert jorder["mean_brightening"] > heavy["mean_brightening"] and jorder["offset"] > heavy["offset"]
    assert ddn["width"] > jorder["width"] and ddn["length"] > 2 * jorder["length"]  # soft and long
    assert ddn["angle"] < heavy["angle"]  # near vertical


def test_storm_is_dense_long_thin_streaks_at_one_slant_with_little_veil(benchmark_sized):
    storm, drizzle, heavy = (_median_statistics(benchmark_sized, name) for name in ("storm", "drizzle", "heavy"))
    assert storm["length"] > 3 * drizzle["length"] and storm["width"] < heavy["width"]  # long and thin
    assert storm["crossing"] < 0.01  # layers share one slant
    assert 0.3 < storm["brightened"] < heavy["brightened"] and storm["offset"] < heavy["offset"] / 2  # dense, no heavy veil
    assert storm["darker"] == 0.0


def test_downpour_lays_fine_far_rain_beneath_long_streaks_at_one_slant(benchmark_sized):
    storm, drizzle = synth.FAMILIES["storm"], synth.FAMILIES["drizzle"]
    for seed in range(5):
        layers = synth.sample_params("downpour", seed).layers
        near = [layer for layer in layers if layer.length >= storm.length[0]]
        far = [layer for layer in layers if layer.length <= drizzle.length[1]]
        assert 2 <= len(near) <= 3 and 2 <= len(far) <= 3 and len(near) + len(far) == len(layers)
        assert all(drizzle.density[0] <= layer.density <= drizzle.density[1] for layer in far)
        angles = [layer.angle for layer in layers]
        assert max(angles) - min(angles) <= 4 * storm.jitter
    downpour, near_only, far_only = (_median_statistics(benchmark_sized, name) for name in ("downpour", "storm", "drizzle"))
    assert far_only["length"] < downpour["length"] < near_only["length"]  # streaks of both scales
    assert downpour["brightened"] > near_only["brightened"] + 0.1  # denser than storm alone
    assert downpour["crossing"] < far_only["crossing"] / 2  # drizzle's layers turned to one slant
    assert downpour["darker"] == 0.0


def test_near_lays_wide_faint_streaks_over_finer_rain_through_a_camera(benchmark_sized):
    near, medium = synth.FAMILIES["near"], synth.PRESETS["medium"]
    for seed in range(5):
        params = synth.sample_params("near", seed)
        wide = [layer for layer in params.layers if layer.width >= near.width[0]]
        fine = [layer for layer in params.layers if layer.width <= medium.width[1]]
        assert 1 <= len(wide) <= 2 and 1 <= len(fine) <= 2 and len(wide) + len(fine) == len(params.layers)
        assert all(layer.amplitude <= near.amplitude[1] for layer in wide)  # faint: out of focus
        angles = [layer.angle for layer in params.layers]
        assert max(angles) - min(angles) <= 4 * near.jitter  # one slant
        assert params.camera is not None
    wide_only = _median_statistics(benchmark_sized, replace(near, camera=False, beneath=None))
    fine_only = _median_statistics(benchmark_sized, medium)
    assert wide_only["width"] > 1.5 * fine_only["width"] and wide_only["mean_brightening"] < fine_only["mean_brightening"]
    assert wide_only["crossing"] < 0.05 and wide_only["darker"] == 0.0  # one slant (JORDER-style crossing: 0.05-0.2)


def test_streak_statistics_read_a_known_layer():
    clean = np.full((321, 481, 3), 80, np.uint8)
    layer = synth.StreakLayer(angle=20.0, length=0.15, width=1.5, density=0.01, amplitude=0.8, seed=3)
    params = synth.RainParams("test", 0, (layer,), (1.0, 1.0, 1.0), 0.0, 0.85)
    rainy = np.round(synth.composite(clean / 255, synth.render_rain(params, 321, 481), params) * 255).astype(np.uint8)
    stats = synth.streak_statistics(rainy, clean)
    assert stats["angle"] == pytest.approx(20, abs=1.5) and stats["crossing"] < 0.01
    assert stats["length"] > 4 * stats["width"]
    crossed = synth.RainParams("test", 0, (layer, synth.StreakLayer(-20.0, 0.15, 1.5, 0.01, 0.8, 4)), (1.0, 1.0, 1.0), 0.0, 0.85)
    rainy = np.round(synth.composite(clean / 255, synth.render_rain(crossed, 321, 481), crossed) * 255).astype(np.uint8)
    assert synth.streak_statistics(rainy, clean)["crossing"] > 0.3


def test_original_presets_draw_and_render_as_before(photos):
    # derain-synth must not change: the new components stay off and out of the manifest lines
    for preset in synth.PRESETS:
        params = synth.sample_params(preset, 21)
        assert set(params.to_dict()) == {"preset", "seed", "layers", "tint", "veil", "veil_light"}
        rainy, target, drawn = synth.synthesize(photos[2], preset, 21)
        assert drawn == params and target is photos[2]
        assert rainy.tobytes() == synth.add_rain(photos[2], preset, 21)[0].tobytes()
    # the first draw of the heavy preset, as the generator has always made it
    layer = synth.sample_params("heavy", 0).layers[0]
    assert (round(layer.angle, 6), round(layer.length, 6)) == (-1.865956, 0.102479)


@pytest.mark.parametrize("family", [*synth.FAMILIES, "mixed"])
def test_every_family_is_deterministic_and_round_trips(family, photos):
    rainy, target, params = synth.synthesize(photos[1], family, 5)
    again, target_again, _ = synth.synthesize(photos[1], family, 5)
    assert rainy.tobytes() == again.tobytes() and target.tobytes() == target_again.tobytes()
    assert rainy.shape == target.shape == photos[1].shape and rainy.dtype == np.uint8
    assert synth.RainParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    assert synth.synthesize(photos[1], family, 6)[0].tobytes() != rainy.tobytes()


def _brightening(rainy, target):
    return rainy.astype(np.float64).mean(axis=2) - target.astype(np.float64).mean(axis=2)


def test_drops_are_soft_discs_through_which_the_scene_blurs(photos):
    flat = np.full((240, 360, 3), 60, np.uint8)
    params = replace(synth.sample_params("drops", 2), layers=())  # drops only
    assert params.drops >= 1
    rainy, target, _ = synth.render_pair(flat, params)
    from scipy.ndimage import label

    blobs, count = label(_brightening(rainy, target) > 8)
    sizes = np.bincount(blobs.ravel())[1:]
    assert 1 <= count <= params.drops and sizes.max() > np.pi * (0.03 * 240) ** 2 * 0.5  # discs, not specks
    textured = np.ascontiguousarray(photos[0][:240, :240])
    through_drops, _, _ = synth.render_pair(textured, params)
    inside = (_brightening(synth.render_pair(flat[:, :240], params)[0], flat[:, :240]) > 8)[:, 1:]

    def detail(image):  # horizontal pixel differences
        return np.abs(np.diff(image.astype(np.float64), axis=1)).mean(axis=2)

    assert detail(through_drops)[inside].mean() < 0.7 * detail(textured)[inside].mean()


def test_splashes_land_on_the_lower_part(photos):
    params = replace(synth.sample_params("splashes", 3), layers=())
    rainy, target, _ = synth.render_pair(np.full((300, 400, 3), 50, np.uint8), params)
    bright = _brightening(rainy, target) > 15
    assert bright[: int(0.55 * 300)].sum() == 0 and bright[int(0.6 * 300) :].mean() > 0.01


def test_night_darkens_the_scene_and_keeps_the_rain_bright(photos):
    rainy, target, params = synth.synthesize(photos[1], "night", 4)
    assert params.exposure < 0.5 and target.mean() < 0.5 * photos[1].mean()
    assert np.percentile(_brightening(rainy, target), 99) > 60  # bright streaks on the dark scene


def test_fog_thickens_towards_the_far_top(photos):
    params = replace(synth.sample_params("fog", 8), layers=())
    flat = np.full((240, 320, 3), 40, np.uint8)
    rainy, target, _ = synth.render_pair(flat, params)
    veil = _brightening(rainy, target)
    assert params.fog > 0.3 and veil[:40].mean() > 2 * veil[-40:].mean() + 5


def test_camera_adds_noise_and_compression_to_the_input_only(photos):
    seed = next(s for s in range(50) if (c := synth.sample_params("camera", s).camera).jpeg_quality and c.noise > 0.01)
    params = synth.sample_params("camera", seed)
    rainy, target, _ = synth.render_pair(photos[3], params)
    clean_render, _, _ = synth.render_pair(photos[3], replace(params, camera=None))
    assert target is photos[3]
    assert 1.0 < np.abs(rainy.astype(np.float64) - clean_render).mean() < 15


def test_mixed_draws_every_family():
    labels = {synth.sample_params("mixed", seed).preset for seed in range(300)}
    assert labels == {f"mixed:{name}" for name in synth.MIXED_FAMILIES}


def test_synth_command_takes_the_families(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.open(PHOTOS[0]).save(clean / "photo.0001.png")
    assert run_cli("synth", "--clean", str(clean), "--out", str(tmp_path / "out"), "--preset", "mixed", "--per-image", "3", "--vary-scenes", "--scene-lines", "--short-side", "200") == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "rain.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(line["label"].startswith("mixed:") and "gain" in line and line["scene_lines"] >= 1 for line in lines)
    for line in lines:
        rainy = np.asarray(Image.open(tmp_path / "out" / "input" / f"{line['name']}.png"))
        target = np.asarray(Image.open(tmp_path / "out" / "target" / f"{line['name']}.png"))
        assert rainy.shape == target.shape and min(target.shape[:2]) <= 200

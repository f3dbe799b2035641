"""Rainy clips, the warping-error (flicker) metric, temporal fusion, and their commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")

from derain.cli.main import main  # noqa: E402
from derain.data.synth import render_rain, sample_params  # noqa: E402
from derain.data.synth_video import CameraMotion, _FallingLayer, animated_presets, rainy_clip  # noqa: E402
from derain.imageio import read_image, write_image  # noqa: E402
from derain.video.flicker import warping_errors  # noqa: E402
from derain.video import TemporalFusion  # noqa: E402
from derain.video.io import VideoReader  # noqa: E402
from conftest import DATA  # noqa: E402

PHOTO = DATA / "photos" / "chelsea.png"


def test_streaks_fall_with_constant_direction_and_speed():
    layer = sample_params("heavy", 4).layers[0]
    falling = _FallingLayer(layer, 96, 128, shutter=0.5)
    down, right = falling.step
    assert down == pytest.approx(2 * layer.length * 96 * np.cos(np.radians(layer.angle)))
    for _ in range(3):
        rows, cols, amplitudes = falling.rows.copy(), falling.cols.copy(), falling.amplitudes.copy()
        falling.advance()
        stayed = falling.rows > rows  # the drops that did not fall out of the canvas
        np.testing.assert_allclose(falling.rows[stayed] - rows[stayed], down)
        drift = (falling.cols[stayed] - cols[stayed] - right) % falling.canvas[1]  # columns wrap around
        np.testing.assert_allclose(np.minimum(drift, falling.canvas[1] - drift), 0, atol=1e-9)
        np.testing.assert_array_equal(falling.amplitudes[stayed], amplitudes[stayed])
        # New drops entered, above the canvas top by as much as they fell out below it.
        assert (~stayed).any() and (falling.rows[~stayed] < down).all()
        assert falling.render().max() > 0


def test_density_holds_from_frame_to_frame():
    brightening = [rainy.mean() for _, rainy in rainy_clip(np.zeros((64, 96, 3), np.uint8), 30, height=64, width=96, seed=2)]
    assert min(brightening) > 0.5 * np.mean(brightening) and max(brightening) < 1.5 * np.mean(brightening)


def test_clip_is_seeded_and_leaves_the_still_generator_alone():
    photo = read_image(PHOTO)
    first = list(rainy_clip(photo, 3, height=48, width=64, seed=5, motion=CameraMotion((1.0, 0.0), 0.01)))
    again = list(rainy_clip(photo, 3, height=48, width=64, seed=5, motion=CameraMotion((1.0, 0.0), 0.01)))
    for (clean_a, rainy_a), (clean_b, rainy_b) in zip(first, again):
        np.testing.assert_array_equal(rainy_a, rainy_b)
        np.testing.assert_array_equal(clean_a, clean_b)
    assert (first[0][1] >= first[0][0]).all()  # rain only brightens, as in the stills
    assert not np.array_equal(first[0][0], first[2][0])  # the camera moved
    rain = render_rain(sample_params("medium", 0), 40, 50)
    assert rain.shape == (40, 50) and rain.dtype == np.float32


def test_warping_error_zero_on_a_static_clip_positive_when_flickering():
    photo = read_image(PHOTO)[:64, :96]
    assert max(warping_errors([photo] * 4)) == 0.0
    rng = np.random.default_rng(0)
    flickering = [np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    assert min(warping_errors(flickering, guides=[photo] * 4)) > 1e-3


def noisy_outputs(clean_frames, sigma=6.0, seed=0):
    """What a frame-by-frame model gives: the clean frames with independent residues."""
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8) for frame in clean_frames]


def test_temporal_fusion_lowers_warping_error_on_a_panning_clip():
    photo = read_image(PHOTO)
    clean = [c for c, _ in rainy_clip(photo, 8, height=72, width=96, motion=CameraMotion((1.5, 0.0)))]
    outputs = noisy_outputs(clean)
    fusion = TemporalFusion(2)
    fused = [fusion(frame) for frame in outputs]
    before = np.mean(list(warping_errors(outputs, clean)))
    after = np.mean(list(warping_errors(fused, clean)))
    assert after < 0.7 * before

    def mse(frames):
        return np.mean([(f.astype(float) - c) ** 2 for f, c in zip(frames, clean)])

    assert mse(fused) < mse(outputs)


def test_synth_video_and_eval_commands(tmp_path, capsys):
    rainy, clean = tmp_path / "rainy.mp4", tmp_path / "clean"
    argv = ["data", "synth-video", "--photo", str(PHOTO), "--out", str(rainy), "--clean", str(clean), "--frames", "6", "--size", "64x48", "--pan", "1", "0"]
    assert main(argv) == 0
    with VideoReader(rainy) as reader:
        assert (reader.info.width, reader.info.height, reader.info.frames) == (64, 48, 6)
    assert len(list(clean.iterdir())) == 6
    assert main(["eval", "--restored", str(rainy), "--clean", str(clean), "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["images"] == 6
    assert summary["metrics"]["warping"]["count"] == 5 and summary["metrics"]["warping"]["mean"] > 0
    assert summary["metrics"]["psnr"]["count"] == 6
    assert main(["eval", "--restored", str(clean), "--video", "--out", str(tmp_path / "self")]) == 0
    assert "warping" in capsys.readouterr().out
    header = (tmp_path / "self" / "metrics.csv").read_text().splitlines()[0]
    assert header == "name,warping"


def test_eval_of_a_video_refuses_image_metrics(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    write_image(frames / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["eval", "--restored", str(frames), "--video", "--metrics", "niqe", "--out", str(tmp_path)]) == 2
    assert "--metrics chooses among image metrics" in capsys.readouterr().err


def test_rain_families_with_still_effects_are_refused_by_name():
    assert {"light", "medium", "heavy"} <= set(animated_presets())
    with pytest.raises(ValueError, match="rain 'fog' adds fog, which rainy clips do not animate; use one of light"):
        next(rainy_clip(np.zeros((40, 60, 3), np.uint8), 1, height=32, width=48, preset="fog"))

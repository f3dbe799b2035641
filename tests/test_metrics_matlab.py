"""The MATLAB protocols against the reference values in tests/data/metrics_ref (see its README.md)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.metrics.matlab import (
    ddn_downsample_factor,
    matlab_round,
    psnr_ssim_matlab,
    rgb2y_double,
    rgb2y_uint8,
)

REF = Path(__file__).parent / "data" / "metrics_ref"
PAIRS = json.loads((REF / "refs.json").read_text())["pairs"]
PSNR_TOL, SSIM_TOL = 1e-6, 1e-7


def _load(entry: dict, role: str) -> np.ndarray:
    # JPEG pairs: the values were computed from the stored decoded pixels.
    pixels = entry.get(f"{role}_pixels")
    return np.load(REF / pixels) if pixels else np.asarray(Image.open(REF / entry[role]))


def _check(value, reference, tol):
    if reference is None:
        assert value is None, f"the script gives no value, got {value}"
    elif isinstance(reference, str):
        assert value == float(reference)
    else:
        assert value is not None and abs(value - reference) <= tol, (value, reference)


@pytest.mark.parametrize("protocol", ["rain100", "ddn"])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_reference_pairs(name, protocol):
    entry = PAIRS[name]
    psnr, ssim = psnr_ssim_matlab(_load(entry, "restored"), _load(entry, "gt"), protocol)
    _check(psnr, entry[protocol]["psnr"], PSNR_TOL)
    _check(ssim, entry[protocol]["ssim"], SSIM_TOL)


def test_ddn_downsample_factor_of_reference_pairs():
    for name, entry in PAIRS.items():
        if "downsample_factor" in entry["ddn"]:
            assert ddn_downsample_factor(*entry["size"]) == entry["ddn"]["downsample_factor"], name


@pytest.mark.parametrize("side, factor", [(383, 1), (384, 2), (639, 2), (640, 3), (1152, 5), (100, 1)])
def test_ddn_downsample_factor_rounds_half_away(side, factor):
    assert ddn_downsample_factor(side, side + 7) == factor


def test_matlab_round():
    assert [matlab_round(v) for v in (2.5, 3.5, -2.5, 0.49, 1.5)] == [3, 4, -3, 0, 2]


def test_y_rounding_ties_follow_matlab():
    with open(REF / "y_ties.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 194
    rgb = np.array([[[int(r["r"]), int(r["g"]), int(r["b"])] for r in rows]], dtype=np.uint8)
    expected = np.array([[int(r["y_matlab"]) for r in rows]])
    np.testing.assert_array_equal(rgb2y_uint8(rgb), expected)
    # 45 ties land exactly on n + 0.5 (rounded up), the other 149 just below (rounded down).
    exact = np.array([[float(r["y_exact"]) for r in rows]])
    assert int((expected > exact).sum()) == 45


def test_y_ranges_and_dtypes():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(rgb2y_uint8(rgb), [[16, 235]])
    np.testing.assert_allclose(rgb2y_double(rgb), [[16 / 255, 235 / 255]], rtol=0, atol=1e-15)
    assert rgb2y_uint8(rgb).dtype == np.uint8 and rgb2y_double(rgb).dtype == np.float64


def test_alpha_channel_is_ignored_like_imread():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    alpha = np.full((24, 30, 1), 7, np.uint8)
    expected = psnr_ssim_matlab(rgb, other)
    assert psnr_ssim_matlab(np.concatenate([rgb, alpha], -1), other) == expected


def test_gray_against_rgb_under_rain100_converts_each_image_separately():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    psnr, ssim = psnr_ssim_matlab(rgb2y_uint8(rgb), rgb, "rain100")
    assert psnr == math.inf and ssim == 1.0
    assert psnr_ssim_matlab(rgb2y_uint8(rgb), rgb, "ddn") == (None, None)


def test_different_sizes_name_both_sizes():
    with pytest.raises(ValueError, match="12x13 vs 12x14"):
        psnr_ssim_matlab(np.zeros((12, 13), np.uint8), np.zeros((12, 14), np.uint8))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_non_8bit_is_rejected(dtype):
    with pytest.raises(TypeError, match="uint8"):
        psnr_ssim_matlab(np.zeros((16, 16, 3), dtype), np.zeros((16, 16, 3), np.uint8))


def test_unknown_protocol():
    with pytest.raises(ValueError, match="'basicsr'"):
        psnr_ssim_matlab(np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), "basicsr")

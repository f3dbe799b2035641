"""NIQE and BRISQUE against pyiqa's published calibration scores (tests/data/iqa/NOTICE.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.metrics.brisque import brisque, brisque_features
from derain.metrics.niqe import niqe

IQA = Path(__file__).parent / "data" / "iqa"
with open(IQA / "calibration_summary.csv") as f:
    PUBLISHED = {row["Method"]: {k: float(v) for k, v in row.items() if k != "Method"} for row in csv.DictReader(f)}
IMAGES = sorted(PUBLISHED["niqe"])


def _image(name: str) -> np.ndarray:
    return np.array(Image.open(IQA / f"{name}.png"))


@pytest.mark.parametrize("name", IMAGES)
def test_niqe_reproduces_pyiqa(name):
    assert niqe(_image(name)) == pytest.approx(PUBLISHED["niqe"][name], rel=1e-3)


def test_brisque_reproduces_pyiqa_on_textured_image():
    assert brisque(_image("I03")) == pytest.approx(PUBLISHED["brisque"]["I03"], rel=1e-3)


@pytest.mark.parametrize("name", ["I04", "I06", "I08", "I19"])
def test_brisque_close_to_pyiqa_where_float32_noise_decides(name):
    # pyiqa runs BRISQUE in float32: in flat regions the normalised coefficients are float32
    # rounding noise whose signs move the AGGD fits. pyiqa's own code in float64 gives the same
    # scores as derain (within 4e-3); against its float32 scores the spread is up to 2.9 points.
    assert brisque(_image(name)) == pytest.approx(PUBLISHED["brisque"][name], abs=3.0)


def test_scores_rank_the_calibration_images_like_pyiqa():
    for metric, function in (("niqe", niqe), ("brisque", brisque)):
        ours = [function(_image(name)) for name in IMAGES]
        published = [PUBLISHED[metric][name] for name in IMAGES]
        assert np.argsort(ours).tolist() == np.argsort(published).tolist(), metric


def test_gray_and_rgb_of_equal_luma_agree():
    rgb = _image("I06")
    gray = np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert niqe(rgb) == pytest.approx(niqe(gray), abs=1e-9)
    np.testing.assert_allclose(brisque_features(rgb), brisque_features(gray), atol=1e-9)


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="two 96x96 blocks, got an image of 96x100"):
        niqe(np.zeros((96, 100), np.uint8))
    with pytest.raises(ValueError, match="at least 14x14 pixels, got 10x40"):
        brisque(np.zeros((10, 40), np.uint8))

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


def _scores(filename: str) -> dict[str, dict[str, float]]:
    with open(IQA / filename) as f:
        return {row["Method"]: {k: float(v) for k, v in row.items() if k != "Method"} for row in csv.DictReader(f)}


PUBLISHED = _scores("calibration_summary.csv")
# pyiqa's own BRISQUE code run on a CPU in float32 (NOTICE.md): it reproduces the published scores
# of I03 and I19 but not those of I04, I06 and I08, whose flat regions make the score depend on
# float32 rounding; for those three, pyiqa-on-CPU is the reference derain is held to.
PYIQA_CPU = _scores("pyiqa_cpu_float32.csv")
IMAGES = sorted(PUBLISHED["niqe"])


def _image(name: str) -> np.ndarray:
    return np.array(Image.open(IQA / f"{name}.png"))


@pytest.mark.parametrize("name", IMAGES)
def test_niqe_reproduces_pyiqa(name):
    assert niqe(_image(name)) == pytest.approx(PUBLISHED["niqe"][name], rel=1e-3)


@pytest.mark.parametrize("name", ["I03", "I19"])
def test_brisque_reproduces_pyiqa_published(name):
    assert brisque(_image(name)) == pytest.approx(PUBLISHED["brisque"][name], rel=1e-3)


@pytest.mark.parametrize("name", IMAGES)
def test_brisque_reproduces_pyiqa_run_on_cpu(name):
    # I19 and I04 are mostly flat: a float64 computation gives 63.93 and -0.107 instead. The CPU
    # values were taken with one thread; torch's multi-threaded float32 sums move I04's score by
    # up to 2.5e-3 (2 threads: -0.1152), hence an absolute tolerance for that near-zero score.
    tolerance = {"abs": 5e-3} if name == "I04" else {"rel": 1e-3}
    assert brisque(_image(name)) == pytest.approx(PYIQA_CPU["brisque"][name], **tolerance)


def test_scores_rank_the_calibration_images_like_pyiqa():
    for metric, function in (("niqe", niqe), ("brisque", brisque)):
        ours = [function(_image(name)) for name in IMAGES]
        published = [PUBLISHED[metric][name] for name in IMAGES]
        assert np.argsort(ours).tolist() == np.argsort(published).tolist(), metric


def test_gray_and_rgb_of_equal_luma_agree():
    rgb = _image("I06")
    gray = np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert niqe(rgb) == pytest.approx(niqe(gray), abs=1e-9)
    # BRISQUE takes luma in float32 like pyiqa, which rounds 7 of I06's pixels the other way than
    # float64 does; a gray image is scored as the RGB image with three equal channels.
    np.testing.assert_array_equal(brisque_features(gray), brisque_features(np.dstack([gray] * 3)))
    np.testing.assert_allclose(brisque_features(rgb), brisque_features(gray), atol=1e-4)


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="two 96x96 blocks, got an image of 96x100"):
        niqe(np.zeros((96, 100), np.uint8))
    with pytest.raises(ValueError, match="at least 14x14 pixels, got 10x40"):
        brisque(np.zeros((10, 40), np.uint8))

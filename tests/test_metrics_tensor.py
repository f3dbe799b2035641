"""Tensor PSNR/SSIM: batching, the Y variant against the MATLAB ddn values, gradients, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain.metrics import PSNR, SSIM, psnr, rgb_to_y, ssim
from derain.metrics.matlab import rgb2y_double, ssim_valid

REF = Path(__file__).parent / "data" / "metrics_ref"
PAIRS = json.loads((REF / "refs.json").read_text())["pairs"]


def _tensor(path: Path) -> torch.Tensor:
    array = np.array(Image.open(path))
    return torch.from_numpy(array).permute(2, 0, 1)[None].double() / 255


@pytest.mark.parametrize("name", ["chelsea_noise", "coffee_shift_100x77", "rocket_rain_321x481"])
def test_y_channel_float64_reproduces_ddn_values_without_downsampling(name):
    # ddn's Y is unrounded BT.601 and these pairs have downsampling factor 1.
    entry = PAIRS[name]
    restored, clean = _tensor(REF / entry["restored"]), _tensor(REF / entry["gt"])
    assert psnr(restored, clean, y_channel=True).item() == pytest.approx(entry["ddn"]["psnr"], abs=1e-6)
    assert ssim(restored, clean, y_channel=True).item() == pytest.approx(entry["ddn"]["ssim"], abs=1e-7)


def test_rgb_to_y_matches_matlab_double_y():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    y = rgb_to_y(torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255)[0, 0].numpy()
    np.testing.assert_allclose(y, rgb2y_double(rgb), rtol=0, atol=1e-14)


def test_ssim_matches_numpy_protocol_body_and_scales_with_data_range():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 1, 30, 40, generator=gen, dtype=torch.float64)
    expected = ssim_valid(x[0, 0].numpy() * 255, y[0, 0].numpy() * 255)
    assert ssim(x, y).item() == pytest.approx(expected, abs=1e-12)
    assert ssim(x * 255, y * 255, data_range=255).item() == pytest.approx(expected, abs=1e-12)


def test_per_image_values_are_independent_of_the_batch():
    gen = torch.Generator().manual_seed(1)
    clean = torch.rand(3, 3, 24, 20, generator=gen)
    restored = (clean + 0.05 * torch.randn(3, 3, 24, 20, generator=gen)).clamp(0, 1)
    for metric in (psnr, ssim):
        batched = metric(restored, clean)
        assert batched.shape == (3,)
        single = torch.cat([metric(restored[i : i + 1], clean[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, single)


def test_psnr_known_value_and_identity():
    clean = torch.zeros(1, 3, 4, 4)
    assert psnr(clean + 0.1, clean).item() == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(psnr(clean, clean).item())
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert ssim(flat, flat).item() == pytest.approx(1.0)


def test_modules_equal_functions():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 2, 3, 16, 16, generator=gen)
    torch.testing.assert_close(PSNR(y_channel=True)(x, y), psnr(x, y, y_channel=True))
    torch.testing.assert_close(SSIM(y_channel=True)(x, y), ssim(x, y, y_channel=True))


def test_ssim_gradcheck():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 12, 13, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 12, 13, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y), (x,))
    assert torch.autograd.gradcheck(lambda a: psnr(a, y), (x,))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9)), r"\(1, 3, 8, 8\) and \(1, 3, 8, 9\)"),
        (lambda: ssim(torch.zeros(1, 3, 8, 20), torch.zeros(1, 3, 8, 20)), "at least 11x11, got 8x20"),
        (lambda: psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), y_channel=True), r"got \(1, 1, 8, 8\)"),
    ],
)
def test_errors_name_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()

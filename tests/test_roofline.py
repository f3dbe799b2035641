"""benchmarks/roofline.py: the FLOP count the benchmarks divide by, and the ceilings' shape (not their speed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "roofline.py"
_spec = importlib.util.spec_from_file_location("roofline", _PATH)
roofline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(roofline)


def test_conv_flops_are_two_per_multiply_add():
    cin, cout, k, h, w = 4, 6, 3, 10, 12
    conv = nn.Conv2d(cin, cout, k, padding=1, bias=False)
    assert roofline.model_flops(conv, torch.rand(1, cin, h, w)) == 2 * cin * cout * k * k * h * w


def test_flops_add_up_over_layers_and_batch_and_skip_elementwise_work():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 1), nn.Softmax(dim=1))
    expected = 2 * (3 * 8 * 9 + 8 * 3) * 16 * 16 * 2
    assert roofline.model_flops(model, torch.rand(2, 3, 16, 16)) == expected


def test_matmul_flops_and_a_callable():
    a, b = torch.rand(5, 7), torch.rand(7, 3)
    assert roofline.model_flops(lambda x: x @ b, a) == 2 * 5 * 7 * 3


def test_fused_convolutions_count_as_the_convolutions_they_are():
    from derain.models.layers import fused_conv

    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = torch.rand(1, 4, 10, 12)
    one = 2 * 4 * 4 * 9 * 10 * 12
    assert roofline.model_flops(lambda t: fused_conv(conv, t, gelu=True), x) == one
    assert roofline.model_flops(lambda t: fused_conv(conv, t, residual=t), x) == one


def test_ceilings_name_each_kernel_and_dtype():
    ceilings = roofline.measured_ceilings("cpu", ("float32",), matmul_size=32, conv_channels=4, conv_size=8, repeats=1)
    assert set(ceilings) == {"matmul float32", "conv3x3 float32"}
    assert all(value > 0 for value in ceilings.values())

"""The limit beside the speed: a model's FLOPs, and what this machine's dense kernels reach.

A sibling module of the benchmark scripts (``from roofline import ...``; each script's folder is
on ``sys.path`` when it runs, and spawned worker processes inherit it). A model's achieved
GFLOP/s set beside the GFLOP/s of a large matrix product and a dense 3x3 convolution timed in
the same run says how far the model is from what the hardware does with the same arithmetic,
whatever the neighbours on a shared machine happened to take that day.

    python benchmarks/roofline.py                  # this machine's ceilings, float32 and bf16
    python benchmarks/roofline.py --device cuda --dtypes float32 bfloat16 float16
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

if __name__ == "__main__":  # run as a script, it owns its process: derain's settings, before torch starts
    import derain.cpu

    derain.cpu.tune()

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count


def model_flops(model: nn.Module | Callable, *inputs: torch.Tensor) -> int:
    """Forward FLOPs of ``model(*inputs)``, counted by :class:`torch.utils.flop_counter.FlopCounterMode`.

    A multiply-add counts as two FLOPs, so a convolution counts ``2 * Cin/groups * Cout * kh * kw
    * Hout * Wout`` per image. Only the operators PyTorch's counter knows are counted: matrix
    products (``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``scaled_dot_product_attention``) and
    convolutions. Element-wise work (normalisation, activations, softmax, top-k, masks), FFTs and
    memory movement count nothing, though on a CPU they can take much of the time; the count is
    therefore the dense-kernel work, the part the ceilings of :func:`measured_ceilings` bound.
    ``model`` runs once, under ``torch.no_grad``; it may be any callable (a ``Deraining.restore``).
    """
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_FUSED_CONV_FLOPS) as counter:
        model(*inputs)
    return counter.get_total_flops()


def _fused_conv_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's convolution with fused post-ops (:func:`derain.models.layers.fused_conv`), counted
    as the convolution it is. Its ``binary`` form (13 arguments, a residual sum) takes the
    residual before the weight. The counter passes shapes, not tensors."""
    weight_shape = args[1] if len(args) == 12 else args[0]
    return conv_flop_count(x_shape, weight_shape, out_shape, transposed=False)


_FUSED_CONV_FLOPS = {torch.ops.mkldnn._convolution_pointwise: _fused_conv_flops}


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(function: Callable[[], object], device: torch.device | str, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``function()`` over ``repeats`` calls after ``warmup`` untimed ones,
    each call synchronized on CUDA, so that a time is the work's and not the launch's."""
    for _ in range(warmup):
        function()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measured_ceilings(
    device: torch.device | str = "cpu",
    dtypes: tuple[str, ...] = ("float32", "bfloat16"),
    *,
    matmul_size: int = 2048,
    conv_channels: int = 64,
    conv_size: int = 256,
    repeats: int = 3,
) -> dict[str, float]:
    """GFLOP/s of two dense kernels in each dtype, timed now: ``{"matmul float32": ..., "conv3x3 float32": ...}``.

    - ``matmul``: an ``N x N`` by ``N x N`` product (``2 N^3`` FLOPs), N = ``matmul_size``;
    - ``conv3x3``: a ``conv_channels -> conv_channels`` 3x3 convolution, padding 1, no bias, of one
      ``conv_size`` square image in ``channels_last`` layout, the layout oneDNN and cuDNN prefer.

    Tensors are created in each dtype (no autocast), as a model under autocast runs these kernels.
    Medians of ``repeats`` after a warm-up. A dtype the device cannot run is left out.
    """
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(0)
    ceilings = {}
    for name in dtypes:
        dtype = getattr(torch, name)
        n = matmul_size
        a = torch.randn(n, n, device=device, generator=generator).to(dtype)
        b = torch.randn(n, n, device=device, generator=generator).to(dtype)
        image = torch.randn(1, conv_channels, conv_size, conv_size, device=device, generator=generator)
        image = image.to(dtype).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(conv_channels, conv_channels, 3, 3, device=device, generator=generator)
        weight = weight.to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            try:
                matmul = median_seconds(lambda: a @ b, device, repeats)
                conv = median_seconds(lambda: torch.nn.functional.conv2d(image, weight, padding=1), device, repeats)
            except RuntimeError:  # e.g. no half-precision kernels on this device
                continue
        conv_flops = 2 * conv_channels * conv_channels * 9 * conv_size * conv_size
        ceilings[f"matmul {name}"] = 2 * n**3 / matmul / 1e9
        ceilings[f"conv3x3 {name}"] = conv_flops / conv / 1e9
    return ceilings


def ceilings_table(ceilings: dict[str, float]) -> str:
    """The ceilings as a markdown table, one row per kernel and dtype."""
    rows = "".join(f"| {kernel} | {gflops:.1f} |\n" for kernel, gflops in ceilings.items())
    return "| kernel | GFLOP/s |\n|---|---|\n" + rows


def ceiling_shares(gflops: float, ceilings: dict[str, float]) -> str:
    """Two table cells: ``gflops`` as a share of the float32 matrix-product and 3x3-convolution ceilings."""
    return f"{100 * gflops / ceilings['matmul float32']:.0f}% | {100 * gflops / ceilings['conv3x3 float32']:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--conv-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print(ceilings_table(measured_ceilings(
        args.device, tuple(args.dtypes), matmul_size=args.matmul_size, conv_size=args.conv_size, repeats=args.repeats,
    )))


if __name__ == "__main__":
    main()

"""Every model on a GPU: images/s, achieved TFLOP/s and peak memory in float32, bf16, fp16 and compiled.

Per registered model (default configurations, random weights) and per variant, in a fresh
process: images per second of ``--batch`` images of ``--size`` squared (median of ``--repeats``
after warm-ups, every timing closed by ``torch.cuda.synchronize``), the achieved TFLOP/s (FLOPs
of one forward counted by :func:`roofline.model_flops`: matrix products and convolutions only),
and peak memory (``torch.cuda.max_memory_allocated``; the resident set on a CPU). Variants:
``fp32``; ``bf16`` and ``fp16``, autocast around the float32 model; ``compile``,
``torch.compile`` of the float32 model (its compilation is in the warm-ups, not the timing).
The ceilings of the same run (a large matrix product and a 3x3 convolution per dtype,
:func:`roofline.measured_ceilings`) head the table.

With ``--pairs DIR`` (a folder with ``input/`` and ``target/``, or any layout
:func:`derain.evaluate` reads) the shipped default model (``derain.pretrained.DEFAULT_TAG``) is also scored there
with derain's own evaluation, whole images, in each variant: the PSNR/SSIM change from float32.
bf16 goes through ``Deraining(precision="bf16")``; fp16 runs under an outer autocast, because
the model's card marks it unreliable in fp16 and ``Deraining`` refuses that (this measures why).

It runs unchanged on a CUDA machine; ``--device cpu`` with small sizes is a smoke test.
Reported, never asserted. On a GPU machine, from the repository root:

    python benchmarks/gpu.py --batch 4 --pairs "$CORPUS/derain-synth/test/heavy" 2>&1 | tee gpu.md
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import traceback
from pathlib import Path

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import torch

import derain
from fresh_process import ProcessDied, in_fresh_process
from roofline import ceilings_table, measured_ceilings, median_seconds, model_flops  # the sibling module

VARIANTS = ("fp32", "bf16", "fp16", "compile")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, variant: str) -> contextlib.AbstractContextManager:
    if variant in AUTOCAST:
        return torch.autocast(device.type, dtype=AUTOCAST[variant])
    return contextlib.nullcontext()


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def speed(name: str, variant: str, size: int, batch: int, device: str, repeats: int, tiny: bool) -> dict:
    """One model in one variant: images/s, TFLOP/s and peak memory."""
    device = torch.device(device)
    torch.manual_seed(0)
    card = derain.model_card(name)
    model = derain.create_model(name, **(card.tiny_config if tiny else card.default_config)).eval().to(device)
    rainy = torch.rand(batch, 3, size, size, device=device)
    with torch.inference_mode():
        flops = model_flops(model, rainy)  # the float32 model's work, the same in every variant
        forward = torch.compile(model) if variant == "compile" else model

        def run():
            with _autocast(device, variant):
                forward(rainy)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_seconds(run, device, repeats, warmup=3 if variant == "compile" else 1)
    return {"images_per_s": batch / seconds, "tflops": flops / seconds / 1e12, "peak_mib": _peak_mib(device)}


def quality(pairs: str, variant: str, device: str) -> dict:
    """The shipped default model on ``pairs`` in one variant: mean PSNR and SSIM (rain100 protocol)."""
    from derain.inference import Deraining, evaluate
    from derain.pretrained import DEFAULT_TAG, load_pretrained

    model = load_pretrained(DEFAULT_TAG)
    if variant == "compile":
        model.compile()  # in place: the module keeps its class, so Deraining finds its card
    precision = "bf16" if variant == "bf16" else "fp32"
    derainer = Deraining(model, device=device, tile=None, precision=precision)
    outer = _autocast(derainer.device, "fp16") if variant == "fp16" else contextlib.nullcontext()
    with outer:
        evaluation = evaluate(derainer, pairs)
    if evaluation.failures:
        raise RuntimeError(f"{evaluation.failures[0][0]}: {evaluation.failures[0][1]}")
    means = evaluation.summary()
    return {"psnr": means["psnr"]["mean"], "ssim": means["ssim"]["mean"], "count": means["psnr"]["count"]}


def _ceilings(device: str, dtypes: tuple[str, ...], matmul_size: int, conv_size: int) -> dict:
    channels = 128 if torch.device(device).type == "cuda" else 64  # enough work to fill a GPU
    return measured_ceilings(device, dtypes, matmul_size=matmul_size, conv_channels=channels, conv_size=conv_size)


def _in_fresh_process(function, *args) -> dict | str:
    """``function(*args)`` in its own process; on failure, a one-line reason instead of a result."""
    try:
        return in_fresh_process(_reasoned, function, *args)
    except ProcessDied:
        return "the process died (out of memory?)"


def _reasoned(function, *args) -> dict | str:
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - a variant that fails is a result of this benchmark
        last = traceback.format_exception_only(error)[-1].strip()
        return last if len(last) < 160 else last[:157] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=derain.list_models())
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny configs (a smoke run)")
    parser.add_argument("--pairs", type=Path, help="a folder of pairs: also the default model's PSNR change per variant")
    parser.add_argument("--matmul-size", type=int, default=8192, help="side of the ceiling's matrix product")
    parser.add_argument("--conv-size", type=int, default=512, help="side of the ceiling's 3x3 convolution's image")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"device: {name}, torch {torch.__version__}, {'tiny' if args.tiny else 'default'} configs, "
          f"batch {args.batch} of {args.size}x{args.size}, median of {args.repeats}\n")
    dtypes = ("float32", "bfloat16", "float16") if device.type == "cuda" else ("float32", "bfloat16")
    ceilings = _in_fresh_process(_ceilings, str(device), dtypes, args.matmul_size, args.conv_size)
    if isinstance(ceilings, dict):
        print(f"Ceilings measured in this run (GFLOP/s):\n\n{ceilings_table(ceilings)}")
    else:
        print(f"Ceilings: failed ({ceilings})\n")

    print(f"| model | variant | images/s | TFLOP/s | {memory} |\n|---|---|---|---|---|")
    for model in args.models:
        for variant in args.variants:
            result = _in_fresh_process(speed, model, variant, args.size, args.batch, str(device), args.repeats, args.tiny)
            if isinstance(result, str):
                print(f"| {model} | {variant} | failed: {result} | | |", flush=True)
            else:
                print(f"| {model} | {variant} | {result['images_per_s']:.3g} | {result['tflops']:.3g} | "
                      f"{result['peak_mib']:.0f} |", flush=True)

    if args.pairs:
        print(f"\nThe shipped default model on {args.pairs}, whole images, derain.evaluate (rain100 protocol):\n")
        print("| variant | PSNR | change from fp32 dB | SSIM | change from fp32 | pairs |\n|---|---|---|---|---|---|")
        reference = None
        for variant in ["fp32", *[v for v in args.variants if v != "fp32"]]:
            result = _in_fresh_process(quality, str(args.pairs), variant, str(device))
            if isinstance(result, str):
                print(f"| {variant} | failed: {result} | | | | |", flush=True)
                continue
            reference = reference or result  # fp32 comes first
            print(f"| {variant} | {result['psnr']:.3f} | {result['psnr'] - reference['psnr']:+.3f} | "
                  f"{result['ssim']:.4f} | {result['ssim'] - reference['ssim']:+.4f} | {result['count']} |", flush=True)


if __name__ == "__main__":
    main()

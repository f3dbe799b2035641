"""derain against the official implementations on the CPU: same weights, same input, one run.

The official code is not part of derain. Pass checkouts of the official repositories
(cschenxiang/DRSformer, zs1314/DAIT for CPRAformer, zs1314/DMSR) and install ``einops``, which
they import. Every measurement runs in a fresh process; the official model is built with its
paper configuration and a fixed seed, and derain loads that very state dict unchanged. Each
row reports the median time of both, their ratio, and the largest output difference.

The official code runs twice: in a plain process, as its users run it, and with the process
settings the ``derain`` command applies (:func:`derain.cpu.tune`), so the table separates what derain's code
gains from what its process settings gain; both inherit the caller's environment, so leave
``OMP_WAIT_POLICY`` and ``MALLOC_*`` unset. After the timed runs each side counts its FLOPs on
the same input (matrix products and convolutions, :func:`roofline.model_flops`), so the rows
give the GFLOP/s each achieved beside a float32 matrix product and 3x3 convolution timed in the
same run (:func:`roofline.measured_ceilings`, in derain's process settings). Reported, never asserted.

    OMP_NUM_THREADS=2 python benchmarks/official_speed.py --drsformer ../DRSformer \\
        --cpraformer ../DAIT --dmsr ../DMSR --sizes 256 512 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fresh_process import in_fresh_process  # the sibling module

# where each official class lives inside its repository: (module directory, module, class)
OFFICIAL = {
    "drsformer": ("basicsr/models/archs", "DRSformer_arch", "DRSformer"),
    "cpraformer": (".", "models.DAIT", "DAIT"),
    "dmsr": (".", "models.DMSR", "DMSR"),
}


def _time(forward, rainy, repeats: int) -> tuple[float, object]:
    import torch

    with torch.inference_mode():
        output = forward(rainy)  # warm-up
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            output = forward(rainy)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), output


def _first(output):
    return output[0] if isinstance(output, (list, tuple)) else output


def _flops(model, rainy) -> int:
    from roofline import model_flops  # the sibling module, imported after the process settings

    return model_flops(model, rainy)


def run_official(name: str, checkout: str, size: int, repeats: int, tuned: bool, scratch: str) -> tuple[float, int | None]:
    """Time the official model and, in the plain process, count its FLOPs and save its weights,
    input and output for derain's run."""
    if tuned:
        import derain.cpu

        derain.cpu.tune()
    import torch

    directory, module, cls = OFFICIAL[name]
    sys.path.insert(0, str(Path(checkout) / directory))
    torch.manual_seed(0)
    model = getattr(importlib.import_module(module), cls)().eval()
    rainy = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    median, output = _time(model, rainy, repeats)
    if tuned:
        return median, None
    torch.save({"state_dict": model.state_dict(), "input": rainy, "output": _first(output)},
               Path(scratch) / f"{name}_{size}.pt")
    return median, _flops(model, rainy)


def run_derain(name: str, size: int, repeats: int, scratch: str) -> tuple[float, float, int]:
    import derain.cpu

    derain.cpu.tune()  # the settings of the derain command, before torch starts
    import torch

    import derain

    saved = torch.load(Path(scratch) / f"{name}_{size}.pt", weights_only=True)
    model = derain.create_model(name)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    median, output = _time(model, saved["input"], repeats)
    return median, float((_first(output) - saved["output"]).abs().max()), _flops(model, saved["input"])


def ceilings() -> dict[str, float]:
    import derain.cpu

    derain.cpu.tune()
    from roofline import measured_ceilings

    return measured_ceilings("cpu", ("float32",))


def add_checkout_arguments(parser: argparse.ArgumentParser) -> None:
    """``--drsformer CHECKOUT``, ``--cpraformer CHECKOUT``, ``--dmsr CHECKOUT``."""
    for name in OFFICIAL:
        parser.add_argument(f"--{name}", metavar="CHECKOUT", help=f"official repository of {name}")


def given_checkouts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """``{model: checkout}`` of the checkouts given; at least one, or the parser's error."""
    checkouts = {name: getattr(args, name) for name in OFFICIAL if getattr(args, name)}
    if not checkouts:
        parser.error("give at least one official checkout (--drsformer, --cpraformer, --dmsr)")
    return checkouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkout_arguments(parser)
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    checkouts = given_checkouts(parser, args)

    import torch

    from roofline import ceilings_table

    print(f"torch {torch.__version__}, {os.environ.get('OMP_NUM_THREADS', 'default')} threads, "
          f"float32, median of {args.repeats} after a warm-up\n")
    limits = in_fresh_process(ceilings)
    conv = limits["conv3x3 float32"]
    print(f"Ceilings measured in this run (derain's process settings):\n\n{ceilings_table(limits)}")
    print("| model | input | official s | official s, derain's process settings | derain s "
          "| speed-up | speed-up, same settings | max abs diff | GFLOP official / derain "
          "| GFLOP/s official / derain | derain % of conv3x3 |\n|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name, checkout in checkouts.items():
            for size in args.sizes:
                plain, official_flops = in_fresh_process(run_official, name, checkout, size, args.repeats, False, scratch)
                tuned, _ = in_fresh_process(run_official, name, checkout, size, args.repeats, True, scratch)
                ours, difference, our_flops = in_fresh_process(run_derain, name, size, args.repeats, scratch)
                official_gflops, our_gflops = official_flops / 1e9, our_flops / 1e9
                print(f"| {name} | {size}x{size} | {plain:.2f} | {tuned:.2f} | {ours:.2f} | "
                      f"{plain / ours:.2f}x | {tuned / ours:.2f}x | {difference:.1e} | "
                      f"{official_gflops:.3g} / {our_gflops:.3g} | {official_gflops / plain:.3g} / "
                      f"{our_gflops / ours:.3g} | {100 * our_gflops / ours / conv:.0f}% |", flush=True)


if __name__ == "__main__":
    main()

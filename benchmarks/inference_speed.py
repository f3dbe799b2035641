"""Images per second and peak memory of every registered model, whole images and tiled.

Each measurement runs in a fresh process so that its peak memory (resident set on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU) is its own. The warm-up run counts the FLOPs of
one image (matrix products and convolutions, :func:`roofline.model_flops`), so each row gives
the achieved GFLOP/s beside the GFLOP/s of a large matrix product and a dense 3x3 convolution
timed in the same run (:func:`roofline.measured_ceilings`). Reported, never asserted.

    python benchmarks/inference_speed.py                     # default configs, 256 and 512
    python benchmarks/inference_speed.py --tiny --photo      # tiny configs, plus a 4000x3000 photo
"""

from __future__ import annotations

import argparse
import resource
import time

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import torch

import derain
from derain.inference import Deraining
from fresh_process import in_fresh_process
from roofline import ceiling_shares, ceilings_table, measured_ceilings, model_flops  # the sibling module


def measure(name: str, height: int, width: int, tile: int | None, tiny: bool, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    card = derain.model_card(name)
    model = derain.create_model(name, **(card.tiny_config if tiny else card.default_config))
    derainer = Deraining(model, device=device, tile=tile, overlap=32)
    rainy = torch.rand(1, 3, height, width)
    flops = model_flops(derainer.restore, rainy)  # the warm-up, counted
    if derainer.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(repeats):
        derainer.restore(rainy)
    if derainer.device.type == "cuda":
        torch.cuda.synchronize()
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    images_per_s = repeats / (time.perf_counter() - started)
    return {"images_per_s": images_per_s, "peak_mib": peak_mib, "gflops": flops / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=derain.list_models())
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--tiny", action="store_true", help="tiny configs (a smoke run)")
    parser.add_argument("--photo", action="store_true", help="also a 4000x3000 photo in 512 tiles")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = str(derain.inference.resolve_device(args.device))
    memory = "peak GPU MiB" if device.startswith("cuda") else "peak RSS MiB"
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{'tiny' if args.tiny else 'default'} configs\n")
    ceilings = in_fresh_process(measured_ceilings, device, ("float32",))
    print(f"Ceilings measured in this run:\n\n{ceilings_table(ceilings)}")
    print(f"| model | input | tile | images/s | {memory} | GFLOP/image | GFLOP/s | % of matmul | % of conv3x3 |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        runs = [(size, size, None, args.repeats) for size in args.sizes]
        if args.photo:
            runs.append((3000, 4000, 512, 1))
        for height, width, tile, repeats in runs:
            result = in_fresh_process(measure, name, height, width, tile, args.tiny, device, repeats)
            achieved = result["gflops"] * result["images_per_s"]
            print(f"| {name} | {width}x{height} | {tile or 'whole'} | "
                  f"{result['images_per_s']:.3g} | {result['peak_mib']:.0f} | {result['gflops']:.3g} | "
                  f"{achieved:.3g} | {ceiling_shares(achieved, ceilings)} |", flush=True)


if __name__ == "__main__":
    main()

"""Images per second and peak memory of every registered model, whole images and tiled.

Each measurement runs in a fresh process so that its peak memory (resident set on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU) is its own. Reported, never asserted.

    python benchmarks/inference_speed.py                     # default configs, 256 and 512
    python benchmarks/inference_speed.py --tiny --photo      # tiny configs, plus a 4000x3000 photo
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import torch

import derain
from derain.inference import Deraining


def measure(name: str, height: int, width: int, tile: int | None, tiny: bool, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    card = derain.model_card(name)
    model = derain.create_model(name, **(card.tiny_config if tiny else card.default_config))
    derainer = Deraining(model, device=device, tile=tile, overlap=32)
    rainy = torch.rand(1, 3, height, width)
    derainer.restore(rainy)  # warm-up
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
    return {"images_per_s": repeats / (time.perf_counter() - started), "peak_mib": peak_mib}


def _in_fresh_process(*args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, args)


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
    print(f"| model | input | tile | images/s | {memory} |\n|---|---|---|---|---|")
    for name in args.models:
        runs = [(size, size, None, args.repeats) for size in args.sizes]
        if args.photo:
            runs.append((3000, 4000, 512, 1))
        for height, width, tile, repeats in runs:
            result = _in_fresh_process(name, height, width, tile, args.tiny, device, repeats)
            print(f"| {name} | {width}x{height} | {tile or 'whole'} | "
                  f"{result['images_per_s']:.3g} | {result['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

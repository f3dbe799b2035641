"""Eager fp32 beside the fast paths of ``derain run``: bf16, ``--compile`` and ``--backend onnxruntime``.

For the shipped default weights and for the four architectures at their paper sizes (random
weights: speed does not depend on the values), each path derains the same random image; all
paths of a model and size are timed in turns, so the ratios to eager fp32 come from the same
minutes of the same machine. Reported: seconds to get ready (model load excluded: build,
export or compilation, and the first image), the median of ``--repeats`` images after it, the
ratio to eager fp32 and the largest difference from its output. With ``--pairs``, the mean PSNR
of the default weights on those pairs (:func:`derain.evaluate`) along each path.

    OMP_NUM_THREADS=2 python benchmarks/fast_path.py --pairs corpus/derain-synth/test/heavy
    OMP_NUM_THREADS=2 python benchmarks/fast_path.py --tiny --models drsformer --sizes 128 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import torch

import derain
from derain.inference import Deraining, evaluate
from derain.pretrained import DEFAULT_TAG, load_pretrained

PATHS = {
    "eager fp32": {},
    "eager bf16": {"precision": "bf16"},
    "compile fp32": {"compile": True},
    "compile bf16": {"compile": True, "precision": "bf16"},
    "onnxruntime fp32": {"backend": "onnxruntime"},
}


def build(name: str, pretrained: str, tiny: bool = False) -> torch.nn.Module:
    """The shipped weights for ``pretrained``'s name, else ``name`` at its paper size (or tiny), random weights."""
    if name == pretrained:
        return load_pretrained(pretrained)
    torch.manual_seed(0)
    card = derain.model_card(name)
    return derain.create_model(name, **(card.tiny_config if tiny else card.default_config))


def ready(model: torch.nn.Module, path: str, device: str, tile: int | None, rainy: torch.Tensor):
    """The derainer of ``path``, its first output, and the seconds both took."""
    started = time.perf_counter()
    derainer = Deraining(model, device=device, tile=tile, progress=False, **PATHS[path])
    restored = derainer.restore(rainy)
    return derainer, restored, time.perf_counter() - started


def compare(model: torch.nn.Module, paths: list[str], size: int, device: str, tile: int | None, repeats: int) -> dict:
    """Per path: ready seconds, median seconds per image, and max |difference| from eager fp32."""
    rainy = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    derainers, results = {}, {}
    for path in paths:
        derainers[path], restored, seconds = ready(model, path, device, tile, rainy)
        results[path] = {"ready": seconds, "times": [], "output": restored, "precision": derainers[path].precision}
    for _ in range(repeats):  # in turns: every path sees the same load of the machine
        for path in paths:
            started = time.perf_counter()
            derainers[path].restore(rainy)
            results[path]["times"].append(time.perf_counter() - started)
    reference = results["eager fp32"]["output"]
    for result in results.values():
        result["median"] = statistics.median(result["times"])
        result["difference"] = (result.pop("output") - reference).abs().max().item()
    return results


def psnr_along_paths(model: torch.nn.Module, paths: list[str], device: str, pairs: str) -> dict[str, float]:
    """Mean PSNR of ``model`` on ``pairs`` along each path, tiled as ``derain run`` tiles."""
    return {
        path: evaluate(Deraining(model, device=device, progress=False, **PATHS[path]), pairs, metrics=("psnr",))
        .summary()["psnr"]["mean"]
        for path in paths
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default=DEFAULT_TAG, help=f"shipped weights (default {DEFAULT_TAG})")
    parser.add_argument(
        "--models", nargs="+", help="the --pretrained tag and/or architectures (default: the tag and all four)"
    )
    parser.add_argument("--paths", nargs="+", choices=tuple(PATHS), default=list(PATHS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[512])
    parser.add_argument("--tile", type=int, help="tile side (default: whole images)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny configs of the architectures (a smoke run)")
    parser.add_argument("--pairs", help="a folder of pairs (input/, target/) for the PSNR of the --pretrained weights")
    args = parser.parse_args()
    models = args.models or [args.pretrained, *derain.list_models()]
    paths = ["eager fp32"] + [path for path in args.paths if path != "eager fp32"]
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"bf16 instructions: {derain.inference.backends.cpu_supports_bf16()}\n")
    print("| model | input | path | ready s | median s | x eager fp32 | max abs diff |\n|---|---|---|---|---|---|---|")
    for name in models:
        model = build(name, args.pretrained, args.tiny)
        for size in args.sizes:
            results = compare(model, paths, size, args.device, args.tile, args.repeats)
            base = results["eager fp32"]["median"]
            for path, result in results.items():
                ran = "" if path.endswith(result["precision"]) else f" (ran {result['precision']})"
                print(f"| {name} | {size}x{size} | {path}{ran} | {result['ready']:.1f} | {result['median']:.3f} | "
                      f"{base / result['median']:.2f} | {result['difference']:.1e} |", flush=True)
    if args.pairs:
        psnr = psnr_along_paths(build(args.pretrained, args.pretrained), paths, args.device, args.pairs)
        print(f"\nmean PSNR of {args.pretrained} on {args.pairs}\n\n| path | PSNR dB | change dB |\n|---|---|---|")
        for path, value in psnr.items():
            print(f"| {path} | {value:.3f} | {value - psnr['eager fp32']:+.3f} |")


if __name__ == "__main__":
    main()

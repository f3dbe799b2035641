"""Time of each model against image size: whole images, float32, derain's code, one size per process.

Attention over channels (DRSformer, CPRAformer, DDSAformer) and convolutions cost work in
proportion to the pixels, so on a log-log plot each model's time should run parallel to the
linear reference; a steeper line is memory traffic or cache effects growing with the image.
Each row's GFLOP/s stands beside the machine's ceilings timed in the same run (a large matrix
product and a 3x3 convolution, :func:`roofline.measured_ceilings`). Writes a markdown table
(``--table``) and a log-log PNG of seconds against pixels, one line per model and a dashed
reference through each model's smallest size (``--plot``; needs matplotlib).
A size that fails (out of memory: a killed worker) is reported as such and the rest go on.
Reported, never asserted.

    OMP_NUM_THREADS=2 python benchmarks/size_scaling.py --repeats 2 \\
        --table docs/size_scaling.md --plot docs/size_scaling.png
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import derain.cpu

derain.cpu.tune()  # this script owns its process: the derain command's settings, before torch starts

import torch

import derain
from derain.inference import Deraining
from fresh_process import ProcessDied, in_fresh_process
from roofline import ceiling_shares, ceilings_table, measured_ceilings, median_seconds, model_flops  # the sibling module


def measure(name: str, size: int, tiny: bool, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    card = derain.model_card(name)
    model = derain.create_model(name, **(card.tiny_config if tiny else card.default_config))
    derainer = Deraining(model, device=device, tile=None)
    rainy = torch.rand(1, 3, size, size)
    flops = model_flops(derainer.restore, rainy)  # also the warm-up
    seconds = median_seconds(lambda: derainer.restore(rainy), derainer.device, repeats, warmup=0)
    if derainer.device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": seconds, "gflops": flops / 1e9, "peak_mib": peak_mib}


def _in_fresh_process(*args) -> dict | None:
    """``measure(*args)`` in its own process; ``None`` when that process dies (out of memory)."""
    try:
        return in_fresh_process(measure, *args)
    except ProcessDied:
        return None


def plot(results: dict[str, dict[int, dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), constrained_layout=True)
    for name, by_size in results.items():
        sizes = sorted(size for size, result in by_size.items() if result is not None)
        if not sizes:
            continue
        pixels = [size * size for size in sizes]
        seconds = [by_size[size]["seconds"] for size in sizes]
        (line,) = axes.loglog(pixels, seconds, "o-", label=name)
        axes.loglog(pixels, [seconds[0] * p / pixels[0] for p in pixels], "--", color=line.get_color(), alpha=0.4)
    axes.plot([], [], "k--", alpha=0.4, label="linear in pixels")
    axes.set_xlabel("pixels (square images)")
    axes.set_ylabel("seconds per image")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=derain.list_models())
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 384, 512, 768, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny configs (a smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--table", type=Path, help="also write the markdown table here")
    parser.add_argument("--plot", type=Path, help="write the log-log plot here (PNG)")
    args = parser.parse_args()
    device = str(derain.inference.resolve_device(args.device))
    memory = "peak GPU MiB" if device.startswith("cuda") else "peak RSS MiB"
    header = (f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
              f"{'tiny' if args.tiny else 'default'} configs, float32, whole images, "
              f"median of {args.repeats} after a warm-up\n")
    ceilings = in_fresh_process(measured_ceilings, device, ("float32",))
    header += f"\nCeilings measured in this run:\n\n{ceilings_table(ceilings)}\n"
    lines = [f"| model | input | s/image | s/megapixel | GFLOP/s | % of matmul | % of conv3x3 | {memory} |",
             "|---|---|---|---|---|---|---|---|"]
    print(header + "\n" + "\n".join(lines), flush=True)
    results: dict[str, dict[int, dict | None]] = {}
    for name in args.models:
        results[name] = {}
        for size in args.sizes:
            result = results[name][size] = _in_fresh_process(name, size, args.tiny, device, args.repeats)
            if result is None:
                line = f"| {name} | {size}x{size} | failed (the process died: out of memory?) | | | | | |"
            else:
                achieved = result["gflops"] / result["seconds"]
                line = (f"| {name} | {size}x{size} | {result['seconds']:.3g} | "
                        f"{result['seconds'] / (size * size / 1e6):.3g} | {achieved:.3g} | "
                        f"{ceiling_shares(achieved, ceilings)} | {result['peak_mib']:.0f} |")
            lines.append(line)
            print(line, flush=True)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(header + "\n" + "\n".join(lines) + "\n")
    if args.plot:
        plot(results, args.plot, f"derain, {device}, {torch.get_num_threads()} threads, float32, whole images")


if __name__ == "__main__":
    main()

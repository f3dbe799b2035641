"""Seconds per training step on the CPU: the official training code beside derain's, same weights and batch.

One step is forward, loss, backward and optimizer step on one batch (patch 128, batch 4, float32
unless told otherwise); data loading, the schedule and validation are left out on both sides.

- official: the official model with its paper configuration, the official loss and optimizer
  as its ``train.py`` sets them up (CPRAformer and DMSR: ``train.py`` of zs1314/DAIT and
  zs1314/DMSR, Adam 2e-4; CPRAformer Charbonnier + 0.05 edge over ``losses.py``, DMSR L1 + 0.1
  FFT-L1 at full, 1/2 and 1/4 resolution, written out inline as in its ``train.py``; DRSformer:
  BasicSR's ``ImageCleanModel.optimize_parameters`` with ``Options/Deraining.yml``, AdamW 3e-4,
  weight decay 1e-4, L1, gradients clipped to norm 0.01). BasicSR's ``L1Loss`` (weight 1, mean)
  is ``F.l1_loss``; its package cannot be imported without torchvision, so that is what runs.
  Run twice: plain, as its users run it, and with derain's process settings (:func:`derain.cpu.tune`).
- derain: ``derain.training.loop.setup`` builds model, optimizer, loss and Accelerator from the
  shipped recipe (``configs/NAME.yaml``, with patch and batch overridden) and
  :func:`derain.training.loop.train_step` takes the step, the very code ``derain train`` runs;
  once in float32 and once with ``train.mixed_precision: bf16`` (Accelerate's CPU autocast),
  the latter only on CPUs with bfloat16 instructions (AVX512-BF16 or AMX): elsewhere PyTorch
  emulates bf16, and one CPRAformer step took over 8 minutes on an AVX2 CPU.

derain's model loads the official model's initial weights and both see the same batch, so the
first step's losses should agree (a check that the two compute the same thing; at tiny patches
DRSformer's outputs already differ by ~1e-3 in inference, so there the losses differ in the 4th
digit). ``--batch`` must be 2 or more: CPRAformer's BatchNorm cannot train on one image. Each measurement runs
in a fresh process; medians of ``--steps`` after ``--warmup`` steps. Reported, never asserted.

    OMP_NUM_THREADS=2 python benchmarks/training_speed.py --drsformer ../DRSformer \\
        --cpraformer ../DAIT --dmsr ../DMSR --steps 3
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# the sibling scripts: fresh processes; where each official class lives, its checkout arguments
from fresh_process import ProcessDied, in_fresh_process
from official_speed import OFFICIAL, add_checkout_arguments, given_checkouts

RECIPES = Path(__file__).resolve().parents[1] / "configs"


def _batch(patch: int, batch: int):
    import torch

    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(batch, 3, patch, patch, generator=generator)
    rainy = (clean + 0.3 * torch.rand(batch, 3, patch, patch, generator=generator)).clamp(0, 1)
    return rainy, clean


def _median_step(step, steps: int, warmup: int) -> tuple[float, float]:
    """Median seconds of ``step()`` (which returns the loss) and the first step's loss."""
    first = float(step())
    for _ in range(warmup - 1):
        step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), first


def official_step(name: str, checkout: str, patch: int, batch: int, steps: int, warmup: int, tuned: bool,
                  scratch: str) -> tuple[float, float]:
    """The official model, loss and optimizer: median seconds per step and the first loss."""
    if tuned:
        import derain.cpu

        derain.cpu.tune()
    import torch
    import torch.nn.functional as F

    directory, module, cls = OFFICIAL[name]
    sys.path.insert(0, str(Path(checkout) / directory))
    sys.path.insert(0, str(Path(checkout)))  # DAIT's and DMSR's losses.py
    torch.manual_seed(0)
    model = getattr(importlib.import_module(module), cls)().train()
    if not tuned:
        torch.save(model.state_dict(), Path(scratch) / f"{name}.pt")
    rainy, clean = _batch(patch, batch)

    if name == "drsformer":  # basicsr ImageCleanModel.optimize_parameters, Options/Deraining.yml
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4, betas=(0.9, 0.999))

        def step():
            optimizer.zero_grad()
            preds = model(rainy)
            preds = preds if isinstance(preds, list) else [preds]
            loss = sum(F.l1_loss(pred, clean) for pred in preds)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
            optimizer.step()
            return loss.item()
    else:  # DAIT / DMSR train.py
        losses = importlib.import_module("losses")
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
        criterion_char, criterion_edge, criterion_l1 = losses.CharbonnierLoss(), losses.EdgeLoss(), torch.nn.L1Loss()

        def fft(x):
            x = torch.fft.fft2(x, dim=(-2, -1))
            return torch.stack((x.real, x.imag), -1)

        def step():
            for param in model.parameters():
                param.grad = None
            restored = model(rainy)
            if name == "cpraformer":
                loss_char = sum(criterion_char(restored[j], clean) for j in range(len(restored)))
                loss_edge = sum(criterion_edge(restored[j], clean) for j in range(len(restored)))
                loss = loss_char + 0.05 * loss_edge
            else:
                label2 = F.interpolate(clean, scale_factor=0.5, mode="bilinear")
                label4 = F.interpolate(clean, scale_factor=0.25, mode="bilinear")
                content = (criterion_l1(restored[2], label4) + criterion_l1(restored[1], label2)
                           + criterion_l1(restored[0], clean))
                frequency = (criterion_l1(fft(restored[2]), fft(label4)) + criterion_l1(fft(restored[1]), fft(label2))
                             + criterion_l1(fft(restored[0]), fft(clean)))
                loss = content + 0.1 * frequency
            loss.backward()
            optimizer.step()
            return loss.item()

    return _median_step(step, steps, warmup)


def derain_step(name: str, patch: int, batch: int, steps: int, warmup: int, precision: str,
                scratch: str) -> tuple[float, float]:
    """derain's recipe through ``setup`` and ``train_step``: median seconds per step and the first loss."""
    import derain.cpu

    derain.cpu.tune()
    import numpy as np
    import torch
    from PIL import Image

    from derain.training import load_config
    from derain.training.loop import setup, train_step

    rainy, clean = _batch(patch, batch)
    # setup() builds the recipe's dataset from folders: a few files it never reads from here on
    folders = {}
    for side in ("input", "target"):
        folders[side] = Path(scratch) / f"{name}_{precision}" / side
        folders[side].mkdir(parents=True)
        for i in range(batch):
            Image.fromarray(np.zeros((patch, patch, 3), np.uint8)).save(folders[side] / f"{i}.png")
    config = load_config(RECIPES / f"{name}.yaml", [
        f"data.train_input={folders['input']}", f"data.train_target={folders['target']}",
        "data.val_input=null", "data.val_target=null", f"data.patch_size={patch}", "data.workers=0",
        f"train.batch_size={batch}", f"train.mixed_precision={precision}", "train.progress_bar=false",
        f"train.run_dir={Path(scratch) / f'{name}_{precision}' / 'run'}", "model.init=null",
    ], check_paths=False)
    run = setup(config)
    run.accelerator.unwrap_model(run.model).load_state_dict(torch.load(Path(scratch) / f"{name}.pt", weights_only=True))
    run.model.train()
    batches = itertools.repeat({"rainy": rainy, "clean": clean})
    return _median_step(lambda: train_step(run, batches).item(), steps, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkout_arguments(parser)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4, help="2 or more (CPRAformer's BatchNorm)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1)")
    args = parser.parse_args()
    checkouts = given_checkouts(parser, args)
    warmup = max(args.warmup, 1)

    import torch

    from derain.inference.backends import cpu_supports_bf16

    bf16_units = cpu_supports_bf16()
    print(f"torch {torch.__version__}, {os.environ.get('OMP_NUM_THREADS', 'default')} threads, "
          f"patch {args.patch}, batch {args.batch}, median of {args.steps} steps after {warmup}\n")
    print("| model | official s/step | official s/step, derain's process settings | derain s/step | speed-up "
          "| speed-up, same settings | derain bf16 s/step | bf16 speed-up | first loss official / derain / bf16 |\n"
          "|---|---|---|---|---|---|---|---|---|")
    common = (args.patch, args.batch, args.steps, warmup)
    with tempfile.TemporaryDirectory() as scratch:
        for name, checkout in checkouts.items():
            plain, loss = _step_or_death(official_step, name, checkout, *common, False, scratch)
            tuned, _ = _step_or_death(official_step, name, checkout, *common, True, scratch)
            ours, our_loss = _step_or_death(derain_step, name, *common, "no", scratch)
            bf16, bf16_loss = _step_or_death(derain_step, name, *common, "bf16", scratch) if bf16_units else (None, None)
            cells = (_seconds(plain), _seconds(tuned), _seconds(ours), _ratio(plain, ours), _ratio(tuned, ours),
                     _seconds(bf16) if bf16_units else "no bf16 units", _ratio(ours, bf16), " / ".join(_loss(value) for value in (loss, our_loss, bf16_loss)))
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def _step_or_death(function, *args) -> tuple[float | None, float | None]:
    """(seconds, first loss), or (None, None) where the process was killed (out of memory)."""
    try:
        return in_fresh_process(function, *args)
    except ProcessDied:
        return None, None


def _seconds(value: float | None) -> str:
    return "process died (out of memory?)" if value is None else f"{value:.2f}"


def _ratio(slow: float | None, fast: float | None) -> str:
    return "-" if slow is None or fast is None else f"{slow / fast:.2f}x"


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


if __name__ == "__main__":
    main()

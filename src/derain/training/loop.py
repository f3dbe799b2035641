"""The training loop: data → model → optimizer → step → validate → checkpoint, on Accelerate.

One code path runs on one CPU, one GPU, N GPUs or N nodes (``accelerate launch`` or
``torchrun`` start the processes; Accelerate wraps the model in DDP and handles mixed
precision). The recipe's global batch is kept: each process trains on its share of every
global batch, in micro-batches with gradient accumulation when a device cannot hold it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import load_checkpoint, save_weights
from ..data.paired import PairedImageDataset, TrainingBatches
from ..factory import create_model
from ..inference import evaluate
from . import run_state
from .config import Config, ConfigError, load_config, save_config
from .ema import EMA
from .losses import build_loss
from .schedules import SCHEDULES


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss, or a run folder that cannot be used."""


@dataclass
class Run:
    """What :func:`setup` builds and the loop of :func:`train` uses."""

    config: Config
    run_dir: Path
    accelerator: Any
    model: nn.Module  # as Accelerate prepared it: DDP-wrapped on several processes
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: EMA | None
    loss_fn: nn.Module
    batches: TrainingBatches
    loader: DataLoader
    val_set: PairedImageDataset | None
    best: dict
    start_step: int
    total_steps: int
    steps_per_epoch: int
    unit: int  # steps per unit of val_every/checkpoint_every: 1 (iterations) or steps_per_epoch (epochs)
    log: _Log
    progress: Any


def setup(config: Config | str | Path, overrides: tuple[str, ...] = (), *, resume: bool = False) -> Run:
    """Read the config, check the run folder, build data, model, optimizer, schedule, EMA and loss,
    restore them from the newest checkpoint when resuming, and hand them to Accelerate."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    if isinstance(config, (str, Path)) and Path(config).is_dir():
        config = Path(config) / "config.yaml"
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    cfg, run_dir = config.train, Path(config.train.run_dir)

    # Accelerate only takes a torchrun launch without GPUs as multi-CPU (gloo) when told so.
    cpu_ranks = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    trackers = _trackers(cfg)
    _forget_other_mixed_precision(cfg.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, cpu=cpu_ranks, log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "trackers")),
    )
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    start_step = _prepare_run_dir(run_dir, config, resume, main)
    accelerator.wait_for_everyone()
    if trackers:  # the main process only; TensorBoard then writes under RUN_DIR/trackers/derain
        accelerator.init_trackers(
            "derain", config=_flat(config.to_dict()),
            init_kwargs={"wandb": {"name": run_dir.name}, "mlflow": {"run_name": run_dir.name}},
        )
    set_seed(cfg.seed)

    data = config.data
    train_set = PairedImageDataset.from_folders(
        data.train_input, data.train_target, by=data.pair_by, skip_bad=data.skip_bad, workers=max(data.workers, 1),
        patch_size=data.patch_size, augment=data.augment, seed=cfg.seed,
    )
    device_batch = cfg.device_batch_size or cfg.batch_size // world
    if device_batch < 1 or cfg.batch_size % (device_batch * world):
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} cannot be split into device batches of "
            f"{cfg.device_batch_size or 'an equal share'} over {world} processes; set train.device_batch_size "
            f"to a divisor of {cfg.batch_size // world if cfg.batch_size % world == 0 else cfg.batch_size}"
        )
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"data.train_input holds {len(train_set)} pairs, fewer than train.batch_size {cfg.batch_size}")
    unit = steps_per_epoch if cfg.epochs is not None else 1
    total_steps = cfg.iterations if cfg.iterations is not None else cfg.epochs * steps_per_epoch
    val_set = None
    if data.val_input is not None:
        val_set = PairedImageDataset.from_folders(
            data.val_input, data.val_target, by=data.pair_by, workers=max(data.workers, 1), center_crop=data.val_crop
        )

    model = create_model(config.model.name, **config.model.config)
    if config.model.init is not None:
        load_checkpoint(config.model.init, model=model)
        model.train()
    optimizer = _build_optimizer(config, model)
    scheduler = _build_scheduler(config, optimizer, steps_per_epoch, total_steps)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    loss_fn = build_loss(config.loss.name, edge_weight=config.loss.edge_weight, fft_weight=config.loss.fft_weight)
    best = {"psnr": -math.inf, "step": None, "stale": 0}
    if start_step:
        state = run_state.load_checkpoint_state(run_dir, start_step, model, ema.model if ema else None)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best = state["best"]
        run_state.restore_rng_states(state["rng"])

    model, optimizer = accelerator.prepare(model, optimizer)
    batches = TrainingBatches(
        len(train_set), global_batch=cfg.batch_size, device_batch=device_batch, total_steps=total_steps,
        seed=cfg.seed, rank=rank, world=world, start_step=start_step,
    )
    loader = DataLoader(
        train_set, batch_sampler=batches, num_workers=data.workers, pin_memory=accelerator.device.type == "cuda"
    )
    return Run(
        config, run_dir, accelerator, model, optimizer, scheduler, ema, loss_fn.to(accelerator.device), batches,
        loader, val_set, best, start_step, total_steps, steps_per_epoch, unit,
        log=_Log(run_dir, main, accelerator if trackers else None),
        progress=_progress(main and cfg.progress_bar, start_step, total_steps),
    )


def _forget_other_mixed_precision(mixed_precision: str) -> None:
    """Let a run in this process use another ``train.mixed_precision`` than an earlier one.

    Accelerate keeps one mixed-precision setting per process and refuses an ``Accelerator`` with
    another ("AcceleratorState has already been initialized"), so a second ``train()`` in the same
    process (a notebook, a test session) could not switch between ``no`` and ``bf16``. Only that
    state is cleared, and only then; the distributed state (process group, device) is kept.
    """
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state  # Accelerate's own per-process record, read-only here
    if shared and shared.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def train(config: Config | str | Path, overrides: tuple[str, ...] = (), *, resume: bool = False) -> Path:
    """Train as ``config`` says (a :class:`Config` or a YAML path) and return the run folder.

    With ``resume``, ``config`` may be the run folder: training continues from its newest
    complete checkpoint with the configuration saved there.
    """
    run = setup(config, overrides, resume=resume)
    cfg, accelerator, model = run.config.train, run.accelerator, run.model
    last_saved = run.start_step or None
    micro_batches = iter(run.loader)
    model.train()
    tic = time.perf_counter()
    for step in range(run.start_step, run.total_steps):
        total = train_step(run, micro_batches)
        if not torch.isfinite(total):
            where = run_state.checkpoint_paths(run.run_dir, last_saved)["weights"] if last_saved else "none (no checkpoint yet)"
            raise TrainingError(f"loss is {total.item()} at step {step + 1}; training stopped. Last good checkpoint: {where}")
        lr = run.scheduler.get_last_lr()[0]
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update(accelerator.unwrap_model(model))
        done = step + 1
        run.progress.update(1)
        run.progress.set_postfix(loss=f"{total.item():.4f}", lr=f"{lr:.2e}", refresh=False)
        if done % cfg.log_every == 0 or done == run.total_steps:
            elapsed, tic = time.perf_counter() - tic, time.perf_counter()
            run.log.write(step=done, epoch=step // run.steps_per_epoch + 1, loss=total.item(), lr=lr, seconds=elapsed)
        stopping = False
        if run.val_set is not None and (done % (cfg.val_every * run.unit) == 0 or done == run.total_steps):
            stopping = _validate_and_decide(run, done)
        if done % (cfg.checkpoint_every * run.unit) == 0 or done == run.total_steps or stopping:
            _save_checkpoint(run, done)
            last_saved = done
        if stopping:
            break
    run.progress.close()
    run.log.close()
    accelerator.end_training()
    return run.run_dir


def train_step(run: Run, micro_batches) -> torch.Tensor:
    """One optimizer step on the recipe's global batch; returns its loss, averaged over processes.

    Forward (under the configured mixed precision), loss and backward on each of this process's
    micro-batches (dicts with ``rainy`` and ``clean``, taken from the iterator ``micro_batches``),
    then gradient clipping and the optimizer step. With a non-finite loss the optimizer does not
    step: the caller stops. The schedule and the EMA are the caller's.
    """
    accelerator, model = run.accelerator, run.model
    # Each process takes its share of the recipe's global batch in micro-batches. Dividing
    # each loss by their number makes the accumulated gradient the mean over the global
    # batch, as one step on the whole batch would give.
    total = torch.zeros((), device=accelerator.device)
    for micro in range(run.batches.accumulation):
        batch = next(micro_batches)
        rainy, clean = batch["rainy"].to(accelerator.device), batch["clean"].to(accelerator.device)
        # DDP averages gradients across processes once, after the last micro-batch.
        last = micro == run.batches.accumulation - 1
        with accelerator.no_sync(model) if not last else contextlib.nullcontext():
            with accelerator.autocast():
                loss = run.loss_fn(model(rainy), clean) / run.batches.accumulation
            accelerator.backward(loss)
        total += loss.detach()
    total = accelerator.reduce(total, reduction="mean")
    if not torch.isfinite(total):
        return total
    if run.config.optim.grad_clip is not None:
        accelerator.clip_grad_norm_(model.parameters(), run.config.optim.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return total


def _validate_and_decide(run: Run, done: int) -> bool:
    """Validate, keep ``best.pth``, and return whether every process stops early.

    Validation runs on the main process only: whole images through one unwrapped model, with
    nothing to average across processes; the others wait at the barrier. The stop decision is
    shared right after it, the only time it can change, so the collective runs once per
    validation instead of once per step.
    """
    accelerator, cfg = run.accelerator, run.config.train
    if accelerator.is_main_process:
        scored = run.ema.model if run.ema is not None else accelerator.unwrap_model(run.model)
        psnr, ssim = validate(scored, run.val_set)
        run.log.write(step=done, val_psnr=psnr, val_ssim=ssim)
        if psnr > run.best["psnr"]:
            run.best = {"psnr": psnr, "ssim": ssim, "step": done, "stale": 0}
            save_weights(run.run_dir / "best.pth", scored, run.config.model.name, dict(run.config.model.config))
        else:
            run.best["stale"] = run.best.get("stale", 0) + 1
        if cfg.early_stop_patience is not None and run.best["stale"] >= cfg.early_stop_patience:
            run.log.write(step=done, early_stop=f"{run.best['stale']} validations without a new best "
                          f"(best {run.best['psnr']:.4f} dB at step {run.best['step']})")
            accelerator.set_trigger()
    accelerator.wait_for_everyone()
    return accelerator.check_trigger()  # every process learns the main one's decision


def _save_checkpoint(run: Run, done: int) -> None:
    """Weights and training state of step ``done``, written by the main process; all wait for it."""
    accelerator = run.accelerator
    if accelerator.is_main_process:
        run_state.save_checkpoint(
            run.run_dir, done, accelerator.unwrap_model(run.model), run.config.model.name, dict(run.config.model.config),
            {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(), "best": run.best},
            ema=run.ema.model if run.ema is not None else None, keep_last=run.config.train.keep_last,
        )
    accelerator.wait_for_everyone()


def validate(model: nn.Module, dataset: PairedImageDataset) -> tuple[float, float]:
    """Mean PSNR/SSIM over ``dataset`` with the ``rain100`` MATLAB protocol (Y channel, uint8),
    whole images as :func:`derain.evaluate` runs them."""
    pairs = ((item["name"], item["rainy"], item["clean"]) for item in map(dataset.__getitem__, range(len(dataset))))
    evaluation = evaluate(model, pairs, tile=None)
    if evaluation.failures:
        raise TrainingError(f"validation failed on {evaluation.failures[0][0]}: {evaluation.failures[0][1]}")
    means = evaluation.summary()
    return means["psnr"]["mean"], means["ssim"]["mean"]


def _prepare_run_dir(run_dir: Path, config: Config, resume: bool, main: bool) -> int:
    """Create or check the run folder; return the step to start from."""
    start = run_state.latest_checkpoint(run_dir)
    if resume:
        if start is None:
            raise TrainingError(f"--resume: {run_dir} holds no complete checkpoint to resume from")
        return start
    if start is not None:
        raise TrainingError(
            f"{run_dir} already holds checkpoints (newest: step {start}); "
            "pass --resume to continue it, or choose another train.run_dir"
        )
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    return 0


def _build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    optim = config.optim
    kind = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return kind(
        [p for p in model.parameters() if p.requires_grad],
        lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay,
    )


def _build_scheduler(config: Config, optimizer, steps_per_epoch: int, total_steps: int):
    return SCHEDULES[config.schedule.name](optimizer, config.schedule, steps_per_epoch, config.train.epochs)


def _progress(enabled: bool, start: int, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True)


def _trackers(cfg) -> list[str]:
    """``train.log_with`` (plus TensorBoard for the older ``train.tensorboard: true``), each
    installed: Accelerate silently drops a tracker whose package is missing."""
    from accelerate.tracking import get_available_trackers

    from .config import TRACKER_PACKAGES

    wanted = list(dict.fromkeys([*cfg.log_with, *(["tensorboard"] if cfg.tensorboard else [])]))
    available = {str(tracker) for tracker in get_available_trackers()}
    for name in wanted:
        if name not in available:
            extra = "'derain[train]'" if name == "tensorboard" else TRACKER_PACKAGES[name]
            raise ConfigError(f"train.log_with names {name}, which is not installed: pip install {extra}")
    return wanted


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as ``{"optim.lr": 3e-4, ...}``: trackers take flat scalars (TensorBoard's hparams)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class _Log:
    """``log.jsonl`` in the run folder (always: the record ``derain plot`` and every tool read), and
    the scalars of each record to Accelerate's trackers (``train.log_with``); main process only."""

    def __init__(self, run_dir: Path, enabled: bool, accelerator: Any = None) -> None:
        self.file = open(run_dir / "log.jsonl", "a") if enabled else None
        self.accelerator = accelerator

    def write(self, **record: Any) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.accelerator is not None:
            scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, float)}
            if scalars:
                self.accelerator.log(scalars, step=record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

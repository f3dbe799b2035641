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
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import load_checkpoint, save_weights
from ..data.paired import PairedImageDataset, TrainingBatches
from ..factory import create_model
from ..inference import evaluate
from . import checkpoints
from .config import Config, ConfigError, load_config, save_config
from .ema import EMA
from .losses import build_loss
from .schedules import CosineAnnealingRestartCyclicLR, WarmupCosineLR


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss, or a run folder that cannot be used."""


def train(config: Config | str | Path, overrides: tuple[str, ...] = (), *, resume: bool = False) -> Path:
    """Train as ``config`` says (a :class:`Config` or a YAML path) and return the run folder.

    With ``resume``, ``config`` may be the run folder: training continues from its newest
    complete checkpoint with the configuration saved there.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if isinstance(config, (str, Path)) and Path(config).is_dir():
        config = Path(config) / "config.yaml"
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    cfg, run_dir = config.train, Path(config.train.run_dir)

    # Accelerate only takes a torchrun launch without GPUs as multi-CPU (gloo) when told so.
    cpu_ranks = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cpu_ranks)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    start_step = _prepare_run_dir(run_dir, config, resume, main)
    accelerator.wait_for_everyone()
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

    name, model_config = config.model.name, dict(config.model.config)
    model = create_model(name, **model_config)
    if config.model.init is not None:
        load_checkpoint(config.model.init, model=model)
        model.train()
    optimizer = _build_optimizer(config, model)
    scheduler = _build_scheduler(config, optimizer, steps_per_epoch, total_steps)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    loss_fn = build_loss(config.loss.name, edge_weight=config.loss.edge_weight, fft_weight=config.loss.fft_weight)
    best = {"psnr": -math.inf, "step": None, "stale": 0}
    if start_step:
        state = checkpoints.load_checkpoint_state(run_dir, start_step, model, ema.model if ema else None)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best = state["best"]
        checkpoints.restore_rng_states(state["rng"])

    model, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = loss_fn.to(accelerator.device)
    batches = TrainingBatches(
        len(train_set), global_batch=cfg.batch_size, device_batch=device_batch, total_steps=total_steps,
        seed=cfg.seed, rank=rank, world=world, start_step=start_step,
    )
    loader = DataLoader(
        train_set, batch_sampler=batches, num_workers=data.workers, pin_memory=accelerator.device.type == "cuda"
    )
    log = _Log(run_dir, main, cfg.tensorboard)
    progress = _progress(main and cfg.progress_bar, start_step, total_steps)
    last_saved = start_step or None
    micro_batches = iter(loader)
    model.train()
    tic = time.perf_counter()
    stopping = False
    for step in range(start_step, total_steps):
        total = torch.zeros((), device=accelerator.device)
        for micro in range(batches.accumulation):
            batch = next(micro_batches)
            rainy, clean = batch["rainy"].to(accelerator.device), batch["clean"].to(accelerator.device)
            last = micro == batches.accumulation - 1
            with accelerator.no_sync(model) if not last else contextlib.nullcontext():
                with accelerator.autocast():
                    loss = loss_fn(model(rainy), clean) / batches.accumulation
                accelerator.backward(loss)
            total += loss.detach()
        total = accelerator.reduce(total, reduction="mean")
        if not torch.isfinite(total):
            where = (
                checkpoints.checkpoint_paths(run_dir, last_saved)["weights"] if last_saved else "none (no checkpoint yet)"
            )
            raise TrainingError(
                f"loss is {total.item()} at step {step + 1}; training stopped. Last good checkpoint: {where}"
            )
        if config.optim.grad_clip is not None:
            accelerator.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        if ema is not None:
            ema.update(accelerator.unwrap_model(model))
        done = step + 1
        progress.update(1)
        progress.set_postfix(loss=f"{total.item():.4f}", lr=f"{lr:.2e}", refresh=False)
        if done % cfg.log_every == 0 or done == total_steps:
            elapsed, tic = time.perf_counter() - tic, time.perf_counter()
            log.write(step=done, epoch=step // steps_per_epoch + 1, loss=total.item(), lr=lr, seconds=elapsed)
        if val_set is not None and (done % (cfg.val_every * unit) == 0 or done == total_steps):
            if main:
                scored = ema.model if ema is not None else accelerator.unwrap_model(model)
                psnr, ssim = validate(scored, val_set)
                log.write(step=done, val_psnr=psnr, val_ssim=ssim)
                if psnr > best["psnr"]:
                    best = {"psnr": psnr, "ssim": ssim, "step": done, "stale": 0}
                    save_weights(run_dir / "best.pth", scored, name, model_config)
                else:
                    best["stale"] = best.get("stale", 0) + 1
                if cfg.early_stop_patience is not None and best["stale"] >= cfg.early_stop_patience:
                    log.write(step=done, early_stop=f"{best['stale']} validations without a new best "
                              f"(best {best['psnr']:.4f} dB at step {best['step']})")
                    accelerator.set_trigger()
            accelerator.wait_for_everyone()
            stopping = accelerator.check_trigger()  # every process learns the main one's decision
        if done % (cfg.checkpoint_every * unit) == 0 or done == total_steps or stopping:
            if main:
                checkpoints.save_checkpoint(
                    run_dir, done, accelerator.unwrap_model(model), name, model_config,
                    {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "best": best},
                    ema=ema.model if ema is not None else None, keep_last=cfg.keep_last,
                )
            last_saved = done
            accelerator.wait_for_everyone()
        if stopping:
            break
    progress.close()
    log.close()
    accelerator.end_training()
    return run_dir


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
    start = checkpoints.latest_checkpoint(run_dir)
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
    schedule = config.schedule
    if schedule.name == "cosine_restart_cyclic":
        return CosineAnnealingRestartCyclicLR(optimizer, schedule.periods, schedule.restart_weights, schedule.eta_mins)
    if schedule.name == "warmup_cosine":
        return WarmupCosineLR(
            optimizer, steps_per_epoch, config.train.epochs, schedule.warmup_epochs, schedule.eta_min
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _progress(enabled: bool, start: int, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True)


class _Log:
    """``log.jsonl`` in the run folder (always) and TensorBoard (``train.tensorboard``), main process only."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.file = open(run_dir / "log.jsonl", "a") if enabled else None
        self.board = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ConfigError("train.tensorboard needs the tensorboard package: pip install 'derain[train]'") from err
            self.board = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, **record: Any) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.board is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, float):
                    self.board.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()

"""Checkpoints of a run folder (named apart from :mod:`derain.checkpoint`, which reads published weight files): weights that official tools read, and the training state beside them.

``checkpoints/step_00001000.pth`` holds the weights in the BasicSR layout ``{"params": ...}``
written by :func:`derain.save_weights` (plus ``.ema.pth`` when EMA is on), and
``checkpoints/step_00001000.state.pt`` the rest: model name and config, optimizer,
scheduler, EMA, RNG states, step and best validation score. Every file is written to a
temporary name and renamed, and the state file is written last, so a run killed at any
moment leaves only complete checkpoints; :func:`latest_checkpoint` ignores the rest.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..checkpoint import read_state_dict, save_weights
from ..files import atomic_write

_STATE = re.compile(r"step_(\d{8})\.state\.pt")
_WEIGHTS = re.compile(r"step_(\d{8})(\.ema)?\.pth")


class CheckpointWriteError(RuntimeError):
    """A checkpoint that could not be written (full disk, no permission); the older ones are intact."""


def checkpoint_paths(run_dir: str | Path, step: int) -> dict[str, Path]:
    folder = Path(run_dir) / "checkpoints"
    stem = f"step_{step:08d}"
    return {
        "weights": folder / f"{stem}.pth",
        "ema": folder / f"{stem}.ema.pth",
        "state": folder / f"{stem}.state.pt",
    }


def weights_step(path: str | Path) -> int | None:
    """The step of a checkpoint's weights file (``step_NNNNNNNN[.ema].pth``, as
    :func:`checkpoint_paths` names them); ``None`` for any other file."""
    match = _WEIGHTS.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    name: str,
    model_config: Mapping[str, Any],
    state: Mapping[str, Any],
    *,
    ema: nn.Module | None = None,
    keep_last: int,
) -> Path:
    """Write the checkpoint of ``step`` and delete all but the ``keep_last`` newest ones.

    Raises :class:`CheckpointWriteError` naming the step and the run folder if the disk is
    full or not writable; the older checkpoints are kept, so ``--resume`` works once it is fixed.
    """
    paths = checkpoint_paths(run_dir, step)
    try:
        paths["state"].parent.mkdir(parents=True, exist_ok=True)
        save_weights(paths["weights"], model, name, model_config)
        if ema is not None:
            save_weights(paths["ema"], ema, name, model_config)
        full_state = {"step": step, "model": name, "model_config": dict(model_config), "rng": rng_states(), **state}
        with atomic_write(paths["state"]) as tmp:
            torch.save(full_state, tmp)
    except OSError as err:
        raise CheckpointWriteError(f"cannot write checkpoint step {step}: {err.strerror or err} ({run_dir})") from err
    for old in list_checkpoints(run_dir)[:-keep_last]:
        for path in checkpoint_paths(run_dir, old).values():
            path.unlink(missing_ok=True)
    return paths["weights"]


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Steps with a complete checkpoint, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STATE.fullmatch(p.name)))


def latest_checkpoint(run_dir: str | Path) -> int | None:
    steps = list_checkpoints(run_dir)
    return steps[-1] if steps else None


def load_checkpoint_state(
    run_dir: str | Path, step: int, model: nn.Module, ema: nn.Module | None = None
) -> dict[str, Any]:
    """Load the weights of ``step`` into ``model`` (and ``ema``) and return its training state."""
    paths = checkpoint_paths(run_dir, step)
    model.load_state_dict(read_state_dict(paths["weights"])[0])
    if ema is not None:
        ema.load_state_dict(read_state_dict(paths["ema"])[0])
    return torch.load(paths["state"], map_location="cpu", weights_only=True)


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in a form ``weights_only`` loads."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: Mapping[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

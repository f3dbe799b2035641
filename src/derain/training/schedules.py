"""Learning-rate schedules of the recipes, stepped once per optimizer step.

Both are plain ``LRScheduler``s, so their state is saved with the checkpoint and a resumed
run continues on the same curve.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler


def _cosine(base: float, eta_min: float, t: float, period: float) -> float:
    return eta_min + 0.5 * (base - eta_min) * (1 + math.cos(math.pi * t / period))


class CosineAnnealingRestartCyclicLR(LRScheduler):
    """BasicSR's cyclic cosine with restarts (DRSformer, DDSAformer).

    Cycle ``i`` lasts ``periods[i]`` steps and anneals from ``restart_weights[i]`` × base lr
    to ``eta_mins[i]``. DRSformer's periods [92000, 208000] with eta_mins [3e-4, 1e-6] give
    a constant 3e-4 for 92k steps (the first cycle's floor equals the base lr), then a
    cosine to 1e-6. After the last cycle the lr stays at its end value.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        periods: Sequence[int],
        restart_weights: Sequence[float],
        eta_mins: Sequence[float],
        last_epoch: int = -1,
    ) -> None:
        if not (len(periods) == len(restart_weights) == len(eta_mins)) or not periods:
            raise ValueError(
                f"periods {list(periods)}, restart_weights {list(restart_weights)} and eta_mins "
                f"{list(eta_mins)} must be non-empty and of one length"
            )
        self.periods = list(periods)
        self.restart_weights = list(restart_weights)
        self.eta_mins = list(eta_mins)
        self.ends = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step = min(self.last_epoch, self.ends[-1])
        cycle = min(bisect.bisect_left(self.ends, step), len(self.ends) - 1)
        start = self.ends[cycle - 1] if cycle else 0
        weight, eta_min, period = self.restart_weights[cycle], self.eta_mins[cycle], self.periods[cycle]
        return [_cosine(weight * base, eta_min, step - start, period) for base in self.base_lrs]


class WarmupCosineLR(LRScheduler):
    """DAIT's per-epoch schedule (CPRAformer, DMSR), evaluated at every optimizer step.

    The official scripts chain ``GradualWarmupScheduler(multiplier=1, total_epoch=w)`` and
    ``CosineAnnealingLR(T_max=epochs − w, eta_min)``, stepped once per epoch: epoch ``e``
    (1-based) trains at base·e/w for e ≤ w, then at the cosine value after e − w − 1 steps.
    The lr is constant within an epoch of ``steps_per_epoch`` optimizer steps.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        epochs: int,
        warmup_epochs: int,
        eta_min: float,
        last_epoch: int = -1,
    ) -> None:
        if steps_per_epoch < 1 or epochs <= warmup_epochs:
            raise ValueError(
                f"need steps_per_epoch >= 1 and epochs > warmup_epochs, got {steps_per_epoch}, {epochs}, {warmup_epochs}"
            )
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        epoch = self.last_epoch // self.steps_per_epoch + 1
        if epoch <= self.warmup_epochs:
            return [base * epoch / self.warmup_epochs for base in self.base_lrs]
        t = epoch - self.warmup_epochs - 1
        return [_cosine(base, self.eta_min, t, self.epochs - self.warmup_epochs) for base in self.base_lrs]


# ``schedule.name`` of a training config -> (optimizer, schedule config, steps per epoch, epochs)
# -> the scheduler, stepped once per iteration; the config's allowed values are these keys
SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, Any, int, "int | None"], LRScheduler]] = {
    "cosine_restart_cyclic": lambda optimizer, schedule, steps_per_epoch, epochs: CosineAnnealingRestartCyclicLR(
        optimizer, schedule.periods, schedule.restart_weights, schedule.eta_mins
    ),
    "warmup_cosine": lambda optimizer, schedule, steps_per_epoch, epochs: WarmupCosineLR(
        optimizer, steps_per_epoch, epochs, schedule.warmup_epochs, schedule.eta_min
    ),
    "constant": lambda optimizer, schedule, steps_per_epoch, epochs: torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _: 1.0
    ),
}

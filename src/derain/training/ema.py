"""Exponential moving average of a model's weights, kept beside the training model."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = decay · shadow + (1 − decay) · weights`` after every optimizer step.

    Buffers are copied as they are. The shadow model is what validation and the
    ``params_ema`` weights use when EMA is on.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for shadow, value in zip(self.model.state_dict().values(), model.state_dict().values()):
            if shadow.dtype.is_floating_point:
                shadow.lerp_(value.to(shadow.dtype), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

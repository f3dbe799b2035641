"""Training with the papers' recipes: configuration, the loop, losses, schedules, EMA, checkpoints."""

from .config import Config, ConfigError, load_config, save_config
from .ema import EMA
from .loop import TrainingError, train, validate
from .losses import CharbonnierEdgeLoss, EdgeLoss, L1Loss, MultiScaleL1FFTLoss, build_loss, charbonnier
from .schedules import CosineAnnealingRestartCyclicLR, WarmupCosineLR

__all__ = [
    "CharbonnierEdgeLoss",
    "Config",
    "ConfigError",
    "CosineAnnealingRestartCyclicLR",
    "EMA",
    "EdgeLoss",
    "L1Loss",
    "MultiScaleL1FFTLoss",
    "TrainingError",
    "WarmupCosineLR",
    "build_loss",
    "charbonnier",
    "load_config",
    "save_config",
    "train",
    "validate",
]

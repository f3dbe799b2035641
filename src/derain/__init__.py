"""derain: single-image rain removal with faithful re-implementations of published models."""

from . import models  # noqa: F401  (registers the architectures)
from .checkpoint import CheckpointError, load_checkpoint, save_weights
from .inference import Deraining, derain
from .registry import ModelCard, create_model, list_models, model_card

__all__ = [
    "CheckpointError",
    "Deraining",
    "ModelCard",
    "create_model",
    "derain",
    "list_models",
    "load_checkpoint",
    "model_card",
    "save_weights",
]

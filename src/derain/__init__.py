"""derain: single-image rain removal with faithful re-implementations of published models."""

from . import cpu

# before torch is imported: OpenMP reads its wait policy once, when torch starts it
cpu.tune()

from . import models  # noqa: E402, F401  (registers the architectures)
from .checkpoint import CheckpointError, load_checkpoint, save_weights  # noqa: E402
from .inference import Deraining, derain  # noqa: E402
from .registry import ModelCard, create_model, list_models, model_card  # noqa: E402

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

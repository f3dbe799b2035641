"""derain: single-image rain removal with faithful re-implementations of published models."""

import os

# Read once, when torch starts OpenMP, so it is set before torch is imported (unless the user
# chose): idle OpenMP threads sleep instead of spinning. On a CPU shared with other work,
# spinning threads cost several times the run time (measured: 72 s/MP instead of 14 s/MP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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

"""derain: single-image rain removal with faithful re-implementations of published models.

Importing derain does nothing to the host process and loads no model code: each public name
is imported on first use. Programs that own their process can call :func:`derain.cpu.tune`
first, as the ``derain`` command does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it; the factory and checkpoint register the architectures
_PUBLIC = {
    "CheckpointError": "checkpoint",
    "Deraining": "inference",
    "ModelCard": "registry",
    "create_model": "factory",
    "derain": "inference",
    "evaluate": "inference",
    "list_models": "factory",
    "load_checkpoint": "checkpoint",
    "model_card": "factory",
    "save_weights": "checkpoint",
}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_checkpoint, save_weights
    from .factory import create_model, list_models, model_card
    from .inference import Deraining, derain, evaluate
    from .registry import ModelCard


# subpackages reachable as attributes after a plain ``import derain`` (derain.metrics.psnr, ...)
_SUBPACKAGES = ("cpu", "data", "inference", "metrics", "models", "pretrained", "registry", "training")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _PUBLIC:
        raise AttributeError(f"module 'derain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | set(_SUBPACKAGES))

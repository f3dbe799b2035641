"""Inference: padding, blended tiling, the official test protocols and the high-level call."""

from .api import AUTO, Deraining, derain, inference_card, is_batch_independent, resolve_device
from .evaluation import evaluate
from .padding import pad_to_multiple, padded_size
from .protocols import OFFICIAL_PROTOCOLS, drsformer_official, windowed_official
from .tiling import first_output, run_padded, tile_starts, tiled_forward

__all__ = [
    "AUTO",
    "OFFICIAL_PROTOCOLS",
    "Deraining",
    "derain",
    "drsformer_official",
    "evaluate",
    "first_output",
    "inference_card",
    "is_batch_independent",
    "pad_to_multiple",
    "padded_size",
    "resolve_device",
    "run_padded",
    "tile_starts",
    "tiled_forward",
    "windowed_official",
]

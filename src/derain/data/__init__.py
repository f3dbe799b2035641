"""Data: pairing and published layouts, synthetic rain, the clean-photo corpus, derain-synth."""

from .layouts import LAYOUTS, check_pairs, detect_layout, import_layout, read_layout, read_pair
from .pairing import IMAGE_SUFFIXES, Pair, PairingError, pair_by_regex, pair_by_template, pair_folders, pair_from_list
from .synth import PRESETS, RainParams, add_rain, add_rain_torch, sample_params

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "PRESETS",
    "Pair",
    "PairingError",
    "RainParams",
    "add_rain",
    "add_rain_torch",
    "check_pairs",
    "detect_layout",
    "import_layout",
    "pair_by_regex",
    "pair_by_template",
    "pair_folders",
    "pair_from_list",
    "read_layout",
    "read_pair",
    "sample_params",
]

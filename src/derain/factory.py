"""``create_model``: an architecture built from the registry, with derain's weights if asked.

Kept apart from :mod:`derain.registry` (timm's ``_factory.py`` beside ``_registry.py``): the
registry is a table every layer may read, while building with pretrained weights needs the
checkpoint reader, which itself reads the table.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from . import models  # noqa: F401  (registers the architectures)
from .pretrained import load_pretrained
from .registry import build, list_models, model_card

__all__ = ["create_model", "list_models", "model_card"]  # the lookups, with every architecture registered


def create_model(name: str, pretrained: str | None = None, **overrides: Any) -> nn.Module:
    """Build architecture ``name`` with the official defaults, changed by ``overrides``.

    ``pretrained="derain-synth"`` loads weights shipped with derain (``derain.pretrained``);
    their card fixes the configuration, so overrides are refused then. The model carries its
    card (:func:`derain.registry.card_of`).
    """
    if pretrained is None:
        return build(name, **overrides)
    if overrides:
        raise ValueError(
            f"create_model({name!r}, pretrained={pretrained!r}) takes no overrides: "
            "the pretrained card fixes the configuration"
        )
    return load_pretrained(pretrained, architecture=name)

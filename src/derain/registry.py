"""The one registry of deraining architectures and their model cards.

Architectures register themselves with :func:`register_model` when ``derain.models`` is
imported; everything else (losses, datasets, optimizers) is built by ordinary code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class ModelCard:
    """What a user must know about an architecture before running or training it.

    ``paper_results`` maps a test set to the (PSNR, SSIM) the paper reports on the Y
    channel; ``unused_parameters`` are regular expressions for parameters the official code
    creates but never lets the loss reach (kept for strict loading); ``recipe`` is the path of the training config in ``configs/`` that follows
    the paper. ``num_params`` is filled in by :func:`model_card` from the built model,
    never typed by hand.
    """

    name: str
    paper: str
    official_repo: str | None
    licence: str
    size_multiple: int
    min_size: int
    batch_independent: bool
    num_outputs: int
    half_precision: bool
    tiling: str
    recipe: str
    tiny_config: Mapping[str, Any]
    paper_results: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    default_config: Mapping[str, Any] = field(default_factory=dict)
    unused_parameters: tuple[str, ...] = ()
    notes: str = ""
    num_params: int | None = None


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelCard]] = {}


def register_model(card: ModelCard) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register ``cls`` under ``card.name``."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = (cls, card)
        return cls

    return decorate


def _lookup(name: str) -> tuple[Callable[..., nn.Module], ModelCard]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def list_models(filter: str = "") -> list[str]:
    """Registered architecture names, sorted; ``filter`` keeps names containing it."""
    return sorted(name for name in _REGISTRY if filter in name)


def create_model(name: str, pretrained: str | None = None, **overrides: Any) -> nn.Module:
    """Build architecture ``name`` with the official defaults, changed by ``overrides``.

    ``pretrained="derain-synth"`` loads weights shipped with derain (``derain.pretrained``);
    their card fixes the configuration, so overrides are refused then.
    """
    if pretrained is not None:
        if overrides:
            raise ValueError(
                f"create_model({name!r}, pretrained={pretrained!r}) takes no overrides: "
                "the pretrained card fixes the configuration"
            )
        from .pretrained import load_pretrained  # late: pretrained imports checkpoint, which imports us

        return load_pretrained(pretrained, architecture=name)
    builder, _ = _lookup(name)
    return builder(**overrides)


def model_card(name: str) -> ModelCard:
    """The card of ``name``, with the parameter count of its default configuration."""
    builder, card = _lookup(name)
    with torch.device("meta"):
        model = builder(**card.default_config)
    num_params = sum(p.numel() for p in model.parameters())
    return dataclasses.replace(card, num_params=num_params)


def model_class(name: str) -> Callable[..., nn.Module]:
    """The class registered as ``name`` (used by checkpoint detection)."""
    return _lookup(name)[0]

"""The one registry of deraining architectures and their model cards: a lookup table, nothing more.

Architectures register themselves with :func:`register_model` when ``derain.models`` is
imported; building them, with or without pretrained weights, is :mod:`derain.factory`'s job
(timm keeps ``_registry.py`` and ``_factory.py`` apart for the same reason). Everything else
(losses, datasets, optimizers) is built by ordinary code.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import torch
from torch import nn


class Tiling(enum.Enum):
    """Whether blended tiles give the same restoration as the whole image (spandrel's ``ModelTiling``)."""

    SUPPORTED = "supported"  # tiles change nothing beyond the blended seams
    DISCOURAGED = "discouraged"  # image-wide statistics: tiles change the result slightly
    OFFICIAL_WINDOWS = "official windows"  # the paper's numbers come from fixed windows (protocol="official")


@dataclass(frozen=True)
class ModelCard:
    """What a user must know about an architecture before running or training it.

    ``paper_results`` maps a test set to the (PSNR, SSIM) the paper reports on the Y
    channel; ``unused_parameters`` are regular expressions for parameters the official code
    creates but never lets the loss reach (kept for strict loading); ``recipe`` is the path
    of the training config in ``configs/`` that follows the paper. ``tile`` and ``overlap``
    are the blended tiling that ``derain run``, the demo and :func:`derain.derain` use unless
    told otherwise (``None``: whole images); ``official_protocol`` names the paper's test
    procedure in :data:`derain.inference.OFFICIAL_PROTOCOLS`. ``working_size`` is the short side
    at which weights trained by derain estimate the rain of larger photos
    (:mod:`derain.inference.working_size`); an architecture's card leaves it ``None`` and
    :func:`derain.load_pretrained` sets it from the pretrained card. ``num_params`` is filled in by
    :func:`model_card` from the built model, never typed by hand.
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
    tiling: Tiling
    tiling_notes: str
    recipe: str
    tiny_config: Mapping[str, Any]
    tile: int | None = 256
    overlap: int = 16
    official_protocol: str | None = None
    working_size: int | None = None
    paper_results: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    default_config: Mapping[str, Any] = field(default_factory=dict)
    unused_parameters: tuple[str, ...] = ()
    notes: str = ""
    num_params: int | None = None


MIN_WORKING_SIZE = 16


def check_working_size(working_size: int | None) -> int | None:
    """``working_size`` itself, or a ``ValueError`` naming it when it is not a usable side."""
    if working_size is not None and (
        isinstance(working_size, bool) or not isinstance(working_size, int) or working_size < MIN_WORKING_SIZE
    ):
        raise ValueError(f"working size must be a whole number of pixels >= {MIN_WORKING_SIZE} or None, got {working_size!r}")
    return working_size


class Architecture(Protocol):
    """The contract of a registered class: built from keyword arguments (its official
    constructor), and able to read that configuration back from an official state dict, so a
    published checkpoint loads without the user naming its width or depth."""

    def __call__(self, **config: Any) -> nn.Module: ...

    def config_from_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]: ...


_REGISTRY: dict[str, tuple[Architecture, ModelCard]] = {}


def register_model(card: ModelCard):
    """Class decorator: register ``cls`` under ``card.name``; it must fulfil :class:`Architecture`."""

    def decorate(cls):
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is registered twice")
        if not callable(getattr(cls, "config_from_state_dict", None)):
            raise TypeError(f"{cls.__name__} ({card.name!r}) has no config_from_state_dict classmethod")
        _REGISTRY[card.name] = (cls, card)
        return cls

    return decorate


def _lookup(name: str) -> tuple[Architecture, ModelCard]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def list_models(filter: str = "") -> list[str]:
    """Registered architecture names, sorted; ``filter`` keeps names containing it."""
    return sorted(name for name in _REGISTRY if filter in name)


def model_card(name: str) -> ModelCard:
    """The card of ``name``, with the parameter count of its default configuration."""
    builder, card = _lookup(name)
    with torch.device("meta"):
        model = builder(**card.default_config)
    num_params = sum(p.numel() for p in model.parameters())
    return dataclasses.replace(card, num_params=num_params)


def model_class(name: str) -> Architecture:
    """The class registered as ``name``."""
    return _lookup(name)[0]


def build(name: str, **config: Any) -> nn.Module:
    """``name``'s class built with ``config``, its card attached (see :func:`card_of`)."""
    builder, card = _lookup(name)
    model = builder(**config)
    model.derain_card = card
    return model


def card_of(model: nn.Module) -> ModelCard | None:
    """The card of ``model``, through the wrappers of DDP (``.module``) and ``torch.compile``
    (``._orig_mod``); a model built without derain is recognised by its registered class,
    a subclass by its nearest registered base. ``None`` for unrelated modules."""
    while True:
        card = getattr(model, "derain_card", None)
        if isinstance(card, ModelCard):
            return card
        inner = getattr(model, "_orig_mod", getattr(model, "module", None))
        if not isinstance(inner, nn.Module):
            break
        model = inner
    registered = {cls: card for cls, card in _REGISTRY.values()}
    for cls in type(model).__mro__:
        if cls in registered:
            return registered[cls]
    return None


def unknown_card(name: str) -> ModelCard:
    """What inference assumes of a module derain has no card for: any size, any batch, whole images."""
    return ModelCard(
        name=name, paper="", official_repo=None, licence="", size_multiple=1, min_size=1,
        batch_independent=True, num_outputs=1, half_precision=True, tiling=Tiling.SUPPORTED,
        tiling_notes="", recipe="", tiny_config={}, tile=None,
    )

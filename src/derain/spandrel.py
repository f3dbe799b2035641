"""derain's architectures in spandrel's registry, for chaiNNer, ComfyUI and other spandrel hosts.

spandrel finds an architecture by looking at a state dict's parameter names; this module adds
DRSformer, CPRAformer, DMSR and DDSAformer to its registry the way ``spandrel_extra_arches``
adds its own, so that ``spandrel.ModelLoader().load_from_file(path)`` turns an official
checkpoint, a derain training checkpoint or derain's shipped weights into an
``ImageModelDescriptor``. The descriptor carries what the model card knows: the size multiple
and minimum size, the tiling advice, half-precision support; purpose restoration, scale 1.

spandrel reads the file itself and keeps only the tensors, so the configuration comes from the
parameter shapes (``config_from_state_dict``), as for an official checkpoint. Needs the
``spandrel`` extra: ``pip install 'derain[spandrel]'``.

Example:
    >>> import derain.spandrel, spandrel  # doctest: +SKIP
    >>> derain.spandrel.install()  # doctest: +SKIP
    >>> model = spandrel.ModelLoader().load_from_file("Rain200H.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import torch
from torch import nn

from . import models  # noqa: F401  (registers the architectures)
from .checkpoint import MODEL_BUILD_ERRORS
from .checkpoint import _strip_wrapper_prefixes as strip_wrapper_prefixes
from .inference import first_output
from .registry import Tiling, build, list_models, model_card, model_class

# A first filter on the share of (index-masked) parameter names a file has in common with an
# architecture, as derain.load_checkpoint's detection uses; a candidate is then confirmed by
# building its configuration, read from the shapes, on the meta device and comparing the names.
CANDIDATE_THRESHOLD = 0.5


def _spandrel():
    try:
        import spandrel
    except ImportError as err:
        raise ImportError("derain.spandrel needs spandrel: pip install 'derain[spandrel]'") from err
    return spandrel


def _patterns(keys) -> frozenset[str]:
    return frozenset(re.sub(r"\.\d+\.", ".#.", k) for k in keys)


@functools.cache
def _reference_patterns(name: str) -> frozenset[str]:
    with torch.device("meta"):
        return _patterns(build(name, **model_card(name).default_config).state_dict())


def match(state_dict: Mapping[str, Any]) -> str | None:
    """The derain architecture that has exactly ``state_dict``'s parameter names (spandrel's
    ``detect``), or ``None``: spandrel hosts call it on every file they open, derain's or not."""
    state_dict = strip_wrapper_prefixes(dict(state_dict))
    found = _patterns(state_dict)
    scores = {}
    for name in list_models():
        reference = _reference_patterns(name)
        scores[name] = len(found & reference) / len(found | reference)
    for name in sorted(scores, key=scores.get, reverse=True):
        if scores[name] < CANDIDATE_THRESHOLD:
            break
        try:
            config = model_class(name).config_from_state_dict(state_dict)
            with torch.device("meta"):
                names = build(name, **config).state_dict().keys()
        except MODEL_BUILD_ERRORS:
            continue
        if set(names) == set(state_dict):
            return name
    return None


def _tiling(card_tiling: Tiling):
    # spandrel's enum has no "official windows": the paper's fixed windows are a tiling, so tiles are fine.
    tiling = _spandrel().ModelTiling
    return tiling.DISCOURAGED if card_tiling is Tiling.DISCOURAGED else tiling.SUPPORTED


def _restored(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    return first_output(model(image))  # DMSR's 1/2 and 1/4 outputs are training aids


def architecture(name: str):
    """A ``spandrel.Architecture`` for the registered derain model ``name``."""
    spandrel = _spandrel()
    cls = model_class(name)

    class DerainArchitecture(spandrel.Architecture[nn.Module]):
        def __init__(self) -> None:
            super().__init__(id=cls.__name__, detect=lambda state_dict: match(state_dict) == name, name=cls.__name__)

        def load(self, state_dict: Mapping[str, torch.Tensor]):
            state_dict = strip_wrapper_prefixes(dict(state_dict))
            try:
                config = cls.config_from_state_dict(state_dict)
                model = build(name, **config)
            except MODEL_BUILD_ERRORS as err:
                raise spandrel.UnsupportedModelError(
                    f"looks like a {name} state dict, but its configuration cannot be read from the "
                    f"parameter shapes ({type(err).__name__}: {err})"
                ) from err
            model.load_state_dict(state_dict)
            card = model_card(name)
            return spandrel.ImageModelDescriptor(
                model.eval(),
                state_dict,
                architecture=self,
                purpose="Restoration",
                tags=["derain"],
                supports_half=card.half_precision,
                supports_bfloat16=card.half_precision,
                scale=1,
                input_channels=3,
                output_channels=3,
                size_requirements=spandrel.SizeRequirements(minimum=card.min_size, multiple_of=card.size_multiple),
                tiling=_tiling(card.tiling),
                call_fn=_restored,
            )

    return DerainArchitecture()


def install(registry=None) -> list:
    """Add derain's architectures to ``registry`` (spandrel's ``MAIN_REGISTRY`` by default).

    Returns the ``ArchSupport`` entries added; calling it again adds nothing. They are tried
    after spandrel's own architectures (none of which claims a derain state dict), so a file
    spandrel already knows never reaches derain's detection.
    """
    spandrel = _spandrel()
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    supports = [spandrel.ArchSupport.from_architecture(architecture(name)) for name in list_models()]
    return registry.add(*supports, ignore_duplicates=True)

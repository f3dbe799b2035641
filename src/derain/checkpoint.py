"""Load every checkpoint format the deraining models are published in, without running code.

Formats: BasicSR ``{"params": ...}`` / ``{"params_ema": ...}`` (DRSformer), MPRNet-style
``{"state_dict", "epoch", "optimizer"}`` (CPRAformer, DMSR), a bare state dict, keys
prefixed ``module.`` (saved from ``DataParallel``) or ``_orig_mod.`` (from ``torch.compile``), derain's own training checkpoints, as
``.pth``/``.pt`` pickles or ``.safetensors``. Pickles are opened with ``weights_only=True``,
so a file that needs to import code is refused instead of executed.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from . import models  # noqa: F401  (registers the architectures the files are matched against)
from .files import atomic_write
from .registry import build, list_models, model_card, model_class

# Searched in this order; BasicSR's "params" first, as the official DRSformer test script does.
_WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")
_MAX_KEYS_SHOWN = 10


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or does not fit the model it is loaded into."""


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``path`` and return (state dict, derain metadata or ``{}``).

    The state dict is unwrapped from its publication format and has the ``module.`` and
    ``_orig_mod.`` prefixes of DDP and compiled models removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
        derain_meta = {k[len("derain.") :]: v for k, v in meta.items() if k.startswith("derain.")}
        return _strip_wrapper_prefixes(tensors), derain_meta
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load; the file is a pickle that needs to run code "
            f"beyond plain tensors and containers, which derain never executes ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    meta = dict(obj.get("derain", {})) if isinstance(obj.get("derain"), Mapping) else {}
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(obj):
        found = ", ".join(sorted(map(str, obj))[:_MAX_KEYS_SHOWN])
        raise CheckpointError(
            f"{path}: no state dict found; looked for a dict of tensors, bare or under one of "
            f"{list(_WRAPPER_KEYS)}; top-level keys: {found}"
        )
    return _strip_wrapper_prefixes(tensors), meta


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile; nested in any order


def _strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = True
    while state_dict and stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                stripped = True
    return state_dict


def _key_pattern(key: str) -> str:
    return re.sub(r"\.\d+\.", ".#.", key)


def detect_model(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Name of the registered model whose parameter names best match ``state_dict``.

    Keys are compared with block indices masked out, so any depth or width matches its
    architecture. Returns ``None`` if no model shares at least half of the key patterns.
    """
    file_patterns = {_key_pattern(k) for k in state_dict}
    best, best_score = None, 0.5
    for name in list_models():
        with torch.device("meta"):
            reference = build(name, **model_card(name).default_config)
        model_patterns = {_key_pattern(k) for k in reference.state_dict()}
        score = len(file_patterns & model_patterns) / len(file_patterns | model_patterns)
        if score > best_score:
            best, best_score = name, score
    return best


def load_checkpoint(
    path: str | Path, model: nn.Module | str | None = None, strict: bool = True
) -> nn.Module:
    """Load the weights in ``path`` into ``model`` and return it in eval mode.

    ``model`` may be a module, a registered name (the configuration is read from the
    file), or ``None`` to detect the architecture from the parameter names. A mismatch
    raises :class:`CheckpointError` listing missing and unexpected keys and naming the
    registered model the file looks like.
    """
    state_dict, meta = read_state_dict(path)
    if isinstance(model, str) and meta.get("model") not in (None, model):
        raise CheckpointError(f"{path}: holds a {meta['model']!r} checkpoint, not {model!r}")
    if model is None or isinstance(model, str):
        name = model or meta.get("model") or detect_model(state_dict)
        if name is None:
            raise CheckpointError(
                f"{path}: the parameter names match none of the registered models "
                f"({', '.join(list_models())})"
            )
        config = _config_for(name, state_dict, meta, path)
        model = build(name, **config)
    missing, unexpected = _key_mismatch(model, state_dict, strict)
    if missing or unexpected:
        raise CheckpointError(_mismatch_message(path, model, state_dict, missing, unexpected))
    try:
        model.load_state_dict(state_dict, strict=strict)
    except RuntimeError as err:  # same keys, other shapes
        raise CheckpointError(f"{path}: {err}") from err
    return model.eval()


def _config_for(
    name: str, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any], path: Path
) -> dict[str, Any]:
    if "config" in meta:
        config = meta["config"]
        if isinstance(config, str):  # safetensors metadata holds strings
            config = json.loads(config)
        return dict(config)
    try:
        return model_class(name).config_from_state_dict(state_dict)
    except (KeyError, IndexError, ValueError) as err:
        raise CheckpointError(
            f"{path}: looks like a {name} checkpoint, but its configuration cannot be "
            f"read from the parameter shapes ({err}); pass model=derain.create_model(...)"
        ) from err


def _key_mismatch(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool
) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict)) if strict else []
    unexpected = sorted(set(state_dict) - expected) if strict else []
    return missing, unexpected


def _mismatch_message(
    path: str | Path,
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
) -> str:
    def show(keys: list[str]) -> str:
        more = f" … and {len(keys) - _MAX_KEYS_SHOWN} more" if len(keys) > _MAX_KEYS_SHOWN else ""
        return ", ".join(keys[:_MAX_KEYS_SHOWN]) + more

    lines = [f"{path}: the checkpoint does not fit {type(model).__name__}"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {show(unexpected)}")
    detected = detect_model(state_dict)
    if detected:
        lines.append(
            f"  the file looks like a {detected!r} checkpoint: "
            f"derain.load_checkpoint(path, model={detected!r})"
        )
    return "\n".join(lines)


def save_weights(path: str | Path, model: nn.Module, name: str, config: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights so that :func:`load_checkpoint` rebuilds it from the file alone.

    ``.safetensors`` stores the model name and config as metadata; any other suffix writes
    the BasicSR layout ``{"params": ...}`` that official tools read, plus a ``derain`` entry.
    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {"derain.model": name, "derain.config": json.dumps(dict(config))}
            save_file(state_dict, str(tmp), metadata=meta)
        else:
            torch.save({"params": state_dict, "derain": {"model": name, "config": dict(config)}}, tmp)
    return path

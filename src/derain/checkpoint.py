"""Load every checkpoint format the deraining models are published in, without running code.

Formats: BasicSR ``{"params": ...}`` / ``{"params_ema": ...}`` (DRSformer), MPRNet-style
``{"state_dict", "epoch", "optimizer"}`` (CPRAformer, DMSR), a bare state dict, keys
prefixed ``module.`` (saved from ``DataParallel``) or ``_orig_mod.`` (from ``torch.compile``),
derain's own training checkpoints, as
``.pth``/``.pt`` pickles or ``.safetensors``, told apart by content, not by suffix. Pickles
are opened with ``weights_only=True``, so a file that needs to import code is refused instead of
executed. A file is data from anywhere: its metadata is validated, the memory its configuration
asks for is bounded before anything is built, and non-finite weights are refused.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image
from torch import nn

from . import hub
from . import models  # noqa: F401  (registers the architectures the files are matched against)
from .files import atomic_write
from .registry import build, list_models, model_card, model_class

# Searched in this order; BasicSR's "params" first, as the official DRSformer test script does.
_WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")
_MAX_KEYS_SHOWN = 10
# The parameters a configuration may ask for before anything is allocated: 50 times the largest
# published deraining model (DRSformer, 34 M float32 parameters, 135 MB).
DEFAULT_MAX_PARAMETER_BYTES = 8 << 30
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
_PICKLE_PROTOCOLS = range(2, 6)  # the legacy torch.save format starts with a pickle header
_SAFETENSORS_HEADER_START = ord("{")  # after the 8-byte little-endian header length
# No published configuration comes near: beyond it, even building on the meta device takes minutes.
LARGEST_CONFIG_NUMBER = 4096
# What a model constructor raises on arguments it cannot build a model from.
MODEL_BUILD_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError, IndexError, KeyError)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or does not fit the model it is loaded into."""


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``path`` and return (state dict, derain metadata or ``{}``).

    The state dict is unwrapped from its publication format and has the ``module.`` and
    ``_orig_mod.`` prefixes of DDP and compiled models removed.
    Raises :class:`CheckpointError` for anything else: another kind of file, damage, a pickle
    that needs code, tensors holding NaN or infinity.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    kind = _content_kind(path)
    if kind == "safetensors":
        state_dict, meta = _read_safetensors(path)
    elif kind == "torch":
        state_dict, meta = _unwrap(_read_torch(path), path)
    else:
        expected = "safetensors file" if path.suffix.lower() == ".safetensors" else "checkpoint"
        raise CheckpointError(
            f"{path}: not a readable {expected}: {kind}; derain reads PyTorch files (torch.save) "
            "and safetensors"
        )
    _check_finite(state_dict, path)
    return state_dict, meta


def _content_kind(path: Path) -> str:
    """``"safetensors"``, ``"torch"``, or what the file is instead, in words."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_ZIP_MAGIC) or (len(head) > 1 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS):
        return "torch"
    if len(head) > 8 and head[8] == _SAFETENSORS_HEADER_START and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if not head:
        return "the file is empty"
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        if accept is not None and accept(head):
            return f"the file is a {name} image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised content (first bytes {head[:8].hex(' ')})"
    if text.isprintable() or text.strip().isprintable():
        return f"the file is text ({text.strip()[:12]!r}...)"
    return f"unrecognised content (first bytes {head[:8].hex(' ')})"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file, safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:  # noqa: BLE001 - whatever the parser raises, the file is damaged
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from err
    derain_meta = {k[len("derain.") :]: v for k, v in meta.items() if k.startswith("derain.")}
    return _strip_wrapper_prefixes(tensors), derain_meta


def _read_torch(path: Path) -> Any:
    try:
        with open(path, "rb") as f:  # a file object: torch.load would pick a reader by suffix
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, the one thing never to do with such a file.
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\n", str(err) + "\n")
        raise CheckpointError(
            f"{path}: refused to load; the file is a pickle that needs to run code beyond plain "
            "tensors and containers (or is damaged), and derain never executes code from a file"
            + (f" ({detail.group(1).strip()})" if detail else "")
        ) from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read it") from None
    except Exception as err:  # noqa: BLE001 - whatever torch's reader raises, the file is damaged
        first_line = next(iter(str(err).splitlines()), "")
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {first_line})") from None


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
    names = [k for k in tensors if not isinstance(k, str)]
    if names:
        raise CheckpointError(
            f"{path}: parameter names must be strings, found {names[0]!r} ({type(names[0]).__name__})"
        )
    return _strip_wrapper_prefixes(tensors), meta


def _check_finite(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: {key} holds {bad} NaN or infinite value(s); the weights are damaged")


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
    path: str | Path,
    model: nn.Module | str | None = None,
    strict: bool = True,
    *,
    max_parameter_bytes: int = DEFAULT_MAX_PARAMETER_BYTES,
) -> nn.Module:
    """Load the weights in ``path`` into ``model`` and return it in eval mode.

    ``model`` may be a module, a registered name (the configuration is read from the
    file), or ``None`` to detect the architecture from the parameter names. A model built
    from the file may hold at most ``max_parameter_bytes`` of parameters (checked before it
    is allocated). A mismatch raises :class:`CheckpointError` listing missing and unexpected
    keys and naming the registered model the file looks like.

    ``path`` may also be ``"hf-hub:owner/name"`` or ``"hf-hub:owner/name@revision"`` (read
    through ``huggingface_hub`` and its cache, :mod:`derain.hub`) or a folder written by
    ``derain export --format hub``.
    """
    try:
        path = hub.download(str(path)) if hub.is_hub_name(path) else Path(path)
        path = hub.weights_in(path) if path.is_dir() else path
    except hub.HubError as err:
        raise CheckpointError(str(err)) from None
    state_dict, meta = read_state_dict(path)
    if "model" in meta and meta["model"] not in list_models():
        raise CheckpointError(
            f"{path}: field derain.model is {meta['model']!r}, not a registered model ({', '.join(list_models())})"
        )
    if isinstance(model, str) and meta.get("model") not in (None, model):
        raise CheckpointError(f"{path}: holds a {meta['model']!r} checkpoint, not {model!r}")
    if model is None or isinstance(model, str):
        name = model or meta.get("model") or detect_model(state_dict)
        if name is None:
            raise CheckpointError(
                f"{path}: the parameter names match none of the registered models "
                f"({', '.join(list_models())})"
            )
        config, field = _config_for(name, state_dict, meta, path)
        model = _build_bounded(name, config, field, path, max_parameter_bytes)
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
) -> tuple[dict[str, Any], str]:
    """The constructor arguments of ``name`` and the field of the file they come from."""
    if "config" in meta:
        config = meta["config"]
        if isinstance(config, str):  # safetensors metadata holds strings
            try:
                config = json.loads(config)
            except ValueError as err:
                raise CheckpointError(f"{path}: field derain.config is not valid JSON ({err})") from None
        if not isinstance(config, Mapping):
            raise CheckpointError(f"{path}: field derain.config must be a mapping, found {type(config).__name__}")
        arguments = inspect.signature(model_class(name)).parameters
        for key, value in config.items():
            if key not in arguments:
                raise CheckpointError(
                    f"{path}: field derain.config.{key} is not an argument of {name} "
                    f"(it takes {', '.join(arguments)})"
                )
            problem = argument_type_problem(value, arguments[key].default)
            if problem:
                raise CheckpointError(f"{path}: field derain.config.{key} {problem}")
        too_large = implausibly_large(config)
        if too_large:
            raise CheckpointError(
                f"{path}: field derain.config.{too_large[0]} is {too_large[1]}, over {LARGEST_CONFIG_NUMBER}"
            )
        return dict(config), "derain.config"
    try:
        return model_class(name).config_from_state_dict(state_dict), "the tensor shapes"
    except MODEL_BUILD_ERRORS as err:
        raise CheckpointError(
            f"{path}: looks like a {name} checkpoint, but its configuration cannot be "
            f"read from the parameter shapes ({err}); pass model=derain.create_model(...)"
        ) from err


def argument_type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace a constructor argument whose default is ``default``, or ``None``.

    The value must have the default's type (ints pass as floats; a list for a tuple, with
    elements of the type of the default's elements).
    """
    if default is inspect.Parameter.empty or default is None:
        return None
    kinds = {bool: (bool,), int: (int,), float: (int, float), list: (list, tuple), tuple: (list, tuple)}
    accepted = kinds.get(type(default))
    if accepted is None:
        return None
    if not isinstance(value, accepted) or (isinstance(value, bool) and type(default) is not bool):
        return f"must be {type(default).__name__}, found {value!r}"
    if isinstance(default, (list, tuple)) and default:
        problems = (argument_type_problem(element, default[0]) for element in value)
        if any(problems):
            return f"must be a list of {type(default[0]).__name__}, found {value!r}"
    return None


def implausibly_large(config: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The first (key, value) of a model configuration with a number over ``LARGEST_CONFIG_NUMBER``."""
    for key, value in config.items():
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(n, (int, float)) and not isinstance(n, bool) and n > LARGEST_CONFIG_NUMBER for n in numbers):
            return key, value
    return None


def _build_bounded(name: str, config: dict[str, Any], field: str, path: Path, max_parameter_bytes: int) -> nn.Module:
    """``build(name, **config)``, refused if its parameters would exceed the bound."""
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            skeleton = build(name, **config)
        size = sum(t.numel() * t.element_size() for t in (*skeleton.parameters(), *skeleton.buffers()))
    except MODEL_BUILD_ERRORS as err:
        raise CheckpointError(f"{path}: {field} does not build a {name} ({type(err).__name__}: {err})") from None
    if size > max_parameter_bytes:
        raise CheckpointError(
            f"{path}: {field} ({_describe(config)}) asks for {size / 2**30:.1f} GiB of {name} parameters, "
            f"over the limit of {max_parameter_bytes / 2**30:.1f} GiB; pass max_parameter_bytes= "
            "to load_checkpoint if the file is trusted and the model really is that large"
        )
    return build(name, **config)


def _describe(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "defaults"


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

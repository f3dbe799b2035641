"""The training configuration: typed dataclasses read from YAML and checked before anything runs.

A recipe is one YAML file (``configs/*.yaml``) with the sections below; ``--set a.b=value``
overrides any field (the value is parsed as YAML). Unknown keys, wrong types and
impossible combinations raise :class:`ConfigError` naming the dotted key, so a typo never
silently trains with a default. The resolved configuration is written into the run folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from ..data.paired import AUGMENTATIONS
from ..files import atomic_write
from .losses import LOSSES
from .schedules import SCHEDULES

# Accelerate's trackers that derain offers, and the package each needs.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "aim": "aim"}
TRACKERS = tuple(TRACKER_PACKAGES)


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the key."""


@dataclass
class ModelConfig:
    """Which architecture to train (``derain.create_model(name, **config)``).

    ``init`` is a checkpoint (official or derain) whose weights start a fine-tuning run.
    """

    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    init: str | None = None


@dataclass
class DataConfig:
    """Paired folders, patches and augmentation.

    ``augment``: ``flip_rot8`` is DRSformer's draw of one of 8 flips/rotations,
    ``flip_rot9`` DAIT's (CPRAformer, DMSR) ``randint(0, 8)`` with two identity draws,
    ``flips`` independent horizontal and vertical flips (DDSAformer), ``none``.
    Each of ``train_input``/``train_target`` (and ``val_*``) is a folder or a list of folders,
    paired position by position (``train_input[k]`` with ``train_target[k]``): a mix of datasets
    or rain presets, with names prefixed by their folder (see
    :func:`derain.data.paired.pair_folder_lists`).
    ``pair_by`` is ``stem`` (same file name) or ``sorted`` (position in the sorted listings,
    as the DAIT scripts do). ``val_crop`` centre-crops validation images (CPRAformer and
    DMSR validate on 64×64 centre crops); ``None`` validates on whole images.
    """

    train_input: str | list[str] = ""
    train_target: str | list[str] = ""
    val_input: str | list[str] | None = None
    val_target: str | list[str] | None = None
    pair_by: Literal["stem", "sorted"] = "stem"
    patch_size: int = 128
    augment: Literal[tuple(AUGMENTATIONS)] = "flip_rot8"
    val_crop: int | None = None
    workers: int = 4
    skip_bad: bool = False


@dataclass
class OptimConfig:
    """Adam/AdamW hyper-parameters; ``grad_clip`` is a max gradient norm (``None``: no clip)."""

    name: Literal["adam", "adamw"] = "adamw"
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = None


@dataclass
class ScheduleConfig:
    """Learning-rate schedule.

    ``cosine_restart_cyclic`` (BasicSR's ``CosineAnnealingRestartCyclicLR``, per
    iteration) uses ``periods``, ``restart_weights`` and ``eta_mins``; ``warmup_cosine``
    (DAIT's ``GradualWarmupScheduler`` + ``CosineAnnealingLR``, per epoch) uses
    ``warmup_epochs`` and ``eta_min``; ``constant`` uses neither.
    """

    name: Literal[tuple(SCHEDULES)] = "constant"
    periods: list[int] = field(default_factory=list)
    restart_weights: list[float] = field(default_factory=list)
    eta_mins: list[float] = field(default_factory=list)
    warmup_epochs: int = 0
    eta_min: float = 0.0


@dataclass
class LossConfig:
    """``l1``; ``charbonnier_edge`` (CPRAformer: Charbonnier + ``edge_weight`` × edge loss);
    ``multiscale_l1_fft`` (DMSR: L1 + ``fft_weight`` × FFT L1 over the three outputs)."""

    name: Literal[tuple(LOSSES)] = "l1"
    edge_weight: float = 0.05
    fft_weight: float = 0.1


@dataclass
class TrainConfig:
    """Length, batch, precision and bookkeeping of a run.

    ``batch_size`` is the recipe's global batch, kept whatever the number of processes:
    each process takes ``device_batch_size`` images (default: an equal share) and gradients
    are accumulated over ``batch_size / (device_batch_size × processes)`` micro-batches.
    Exactly one of ``iterations`` and ``epochs`` is set; ``val_every`` and
    ``checkpoint_every`` count in the same unit (iterations or epochs).
    ``early_stop_patience`` ends the run after that many validations in a row without a new
    best PSNR (the DAIT/DMSR recipes: 40 epochs). ``log_with`` names the experiment trackers
    that Accelerate feeds beside ``log.jsonl`` (the record every tool reads); ``tensorboard:
    true``, the older switch, still adds TensorBoard so that earlier run folders resume.
    """

    run_dir: str = ""
    seed: int = 0
    batch_size: int = 16
    device_batch_size: int | None = None
    iterations: int | None = None
    epochs: int | None = None
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    ema_decay: float | None = None
    val_every: int = 1000
    early_stop_patience: int | None = None
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 100
    progress_bar: bool = True
    log_with: list[Literal[TRACKERS]] = field(default_factory=list)
    tensorboard: bool = False


@dataclass
class Config:
    """A whole training recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    source: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), *, check_paths: bool = True
) -> Config:
    """Read a YAML file (or a mapping), apply ``key=value`` overrides, validate.

    ``check_paths`` also requires the data folders to exist (off only for writing configs).
    """
    if isinstance(source, Mapping):
        raw, where = dict(source), "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        where = str(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, found {type(raw).__name__}")
    for override in overrides:
        _apply_override(raw, override)
    try:
        config = _build(Config, raw, "")
        _check(config, check_paths)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return config


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (the run's record, re-read by ``--resume``)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def folder_list(value: str | list[str] | None) -> list[str]:
    """A data folder setting as a list: ``None`` or ``""`` is no folder, a string is one."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({err})") from err
    *parents, leaf = key.split(".")
    if parents == ["model"] and leaf not in _MODEL_KEYS:  # model.dim=8 means model.config.dim=8
        parents, leaf = ["model", "config"], leaf
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parents[: i + 1])} is not a section")
        node = child
    node[leaf] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(prefix + str(k) for k in unknown)}; {where} accepts {', '.join(sorted(names))}"
        )
    values = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, kind, f"{prefix}{name}")
    return cls(**values)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` as type ``kind``, or a ConfigError naming ``key``; ints pass as floats."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        for inner in alternatives[:-1]:
            try:
                return _coerce(value, inner, key)
            except ConfigError:
                pass
        return _coerce(value, alternatives[-1], key)
    if origin is Literal:
        if isinstance(value, bool) and ("yes" if value else "no") in args:  # YAML 1.1 reads no/yes as booleans
            value = "yes" if value else "no"
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _check(config: Config, check_paths: bool) -> None:
    model, data, train, schedule = config.model, config.data, config.train, config.schedule
    from ..factory import list_models
    from ..registry import model_class

    if model.name not in list_models():
        raise ConfigError(f"model.name {model.name!r} is not a registered model ({', '.join(list_models())})")
    arguments = inspect.signature(model_class(model.name)).parameters
    unknown = sorted(set(model.config) - set(arguments))
    if unknown:
        raise ConfigError(
            f"model.config.{unknown[0]} is not an argument of {model.name} "
            f"(it takes {', '.join(arguments)})"
        )
    _check_model_config(model.name, model.config)
    if not train.run_dir:
        raise ConfigError("train.run_dir is required (the folder for checkpoints and logs)")
    if (train.iterations is None) == (train.epochs is None):
        raise ConfigError("set exactly one of train.iterations and train.epochs")
    for key in ("batch_size", "val_every", "checkpoint_every", "keep_last", "log_every"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1, got {getattr(train, key)}")
    if (train.iterations or train.epochs or 0) < 1:
        raise ConfigError("train.iterations / train.epochs must be at least 1")
    if train.ema_decay is not None and not 0 < train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay must lie in (0, 1), got {train.ema_decay}")
    if data.patch_size < 1 or data.workers < 0:
        raise ConfigError("data.patch_size must be positive and data.workers non-negative")
    if (data.val_input is None) != (data.val_target is None):
        raise ConfigError("set both data.val_input and data.val_target, or neither")
    for split in ("train", "val"):
        inputs, targets = (folder_list(getattr(data, f"{split}_{side}")) for side in ("input", "target"))
        if len(inputs) != len(targets):
            raise ConfigError(
                f"data.{split}_input lists {len(inputs)} folders but data.{split}_target {len(targets)}; "
                "give one target folder per input folder"
            )
        if split == "train" and not inputs:
            raise ConfigError("data.train_input is required (a folder or a list of folders)")
    if len(config.optim.betas) != 2:
        raise ConfigError(f"optim.betas must hold two numbers, got {config.optim.betas}")
    if schedule.name == "cosine_restart_cyclic":
        lengths = {len(schedule.periods), len(schedule.restart_weights), len(schedule.eta_mins)}
        if len(lengths) != 1 or not schedule.periods:
            raise ConfigError("schedule.periods, restart_weights and eta_mins must be non-empty lists of one length")
    _check_values(config)
    if schedule.name == "warmup_cosine" and train.epochs is None:
        raise ConfigError("schedule.name warmup_cosine is per epoch: set train.epochs, not train.iterations")
    if check_paths:
        for key in ("train_input", "train_target", "val_input", "val_target"):
            for folder in folder_list(getattr(data, key)):
                if not Path(folder).is_dir():
                    raise ConfigError(f"data.{key}: folder not found: {folder}")
        if model.init is not None and not Path(model.init).is_file():
            raise ConfigError(f"model.init: checkpoint not found: {model.init}")


def _check_model_config(name: str, values: Mapping[str, Any]) -> None:
    """Positive numbers, then a build on the meta device (no memory) for what only the model knows."""
    import torch

    from ..checkpoint import LARGEST_CONFIG_NUMBER, MODEL_BUILD_ERRORS, argument_type_problem, implausibly_large
    from ..registry import build, model_class

    arguments = inspect.signature(model_class(name)).parameters
    for key, value in values.items():
        problem = argument_type_problem(value, arguments[key].default)
        if problem:
            raise ConfigError(f"model.config.{key} {problem}")
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(number, (int, float)) and not isinstance(number, bool) and not number > 0:
                raise ConfigError(f"model.config.{key} must be positive, got {value}")
    too_large = implausibly_large(values)
    if too_large:
        raise ConfigError(f"model.config.{too_large[0]} is {too_large[1]}, over {LARGEST_CONFIG_NUMBER}")
    try:
        with torch.device("meta"):
            build(name, **values)
    except MODEL_BUILD_ERRORS as err:
        raise ConfigError(f"model.config does not build a {name}: {type(err).__name__}: {err}") from None


# Numbers that torch would take silently and train wrongly with: (dotted key, lowest, whether the
# lowest is allowed). ``not value > low`` also refuses NaN.
_BOUNDS = (
    ("optim.lr", 0, True),  # 0 freezes the weights, as tests of the loop do
    ("optim.eps", 0, False),
    ("optim.weight_decay", 0, True),
    ("optim.grad_clip", 0, False),  # 0 clips every gradient to nothing
    ("schedule.periods", 1, True),
    ("schedule.restart_weights", 0, True),
    ("schedule.eta_mins", 0, True),
    ("schedule.warmup_epochs", 0, True),
    ("schedule.eta_min", 0, True),
    ("loss.edge_weight", 0, True),
    ("loss.fft_weight", 0, True),
    ("data.val_crop", 1, True),
    ("train.device_batch_size", 1, True),
    ("train.early_stop_patience", 1, True),
)


def _check_values(config: Config) -> None:
    for key, low, inclusive in _BOUNDS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        for number in value if isinstance(value, list) else [value]:
            if number is not None and not (number >= low if inclusive else number > low):
                relation = f"at least {low}" if inclusive else f"greater than {low}"
                raise ConfigError(f"{key} must be {relation}, got {value}")
    if not all(0 <= beta < 1 for beta in config.optim.betas):
        raise ConfigError(f"optim.betas must lie in [0, 1), got {config.optim.betas}")

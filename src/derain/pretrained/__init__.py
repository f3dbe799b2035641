"""Weights trained by derain itself and shipped inside the package, with their cards.

Each pretrained model is two files in this folder: ``<tag>.safetensors`` (the weights, written by
:func:`derain.save_weights`) and ``<tag>.json`` (its :class:`PretrainedCard`: architecture and
config, data and photo licences, the recipe and the exact command that trained it, and its scores
on the derain-synth test set next to the rainy input's). The training pipeline writes both with
:func:`save_pretrained`; :func:`catalogue` reads the cards found here on first use (never at
import), torchvision-style weights described by data.

Example:
    >>> model = load_pretrained("derain-synth")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from torch import nn

from ..checkpoint import load_checkpoint, save_weights
from ..files import sha256_of
from ..registry import build, card_of, check_working_size, list_models

PRETRAINED_DIR = Path(__file__).parent
DEFAULT_TAG = "derain-near"
MAX_WEIGHTS_BYTES = 20 * 1024 * 1024  # the wheel must stay small enough for PyPI and laptops
PRESETS = ("light", "medium", "heavy")
METRICS = ("psnr", "ssim", "niqe", "brisque")  # PSNR/SSIM: rain100 protocol (Y channel)


class PretrainedError(ValueError):
    """Pretrained weights that are absent, damaged, or described by an invalid card."""


@dataclass(frozen=True)
class PretrainedCard:
    """What was trained, on what, how, and how well; one JSON file beside the weights.

    ``scores`` and ``input_scores`` map a derain-synth test preset (light, medium, heavy) to
    ``{"psnr", "ssim", "niqe", "brisque"}`` of the restored images and of the rainy inputs, and
    ``median_filter_scores`` to ``{"psnr", "ssim"}`` of a 5x5 median filter of the inputs (the
    classical baseline); PSNR/SSIM follow the ``rain100`` protocol of
    :func:`derain.metrics.psnr_ssim_matlab`. ``seconds_per_megapixel`` is a whole ``derain run``
    of a photo under ``speed_setting`` (megapixels, tile, overlap, threads, precision and, where
    given, the working size: ``None`` for one pass, and the CPU).
    ``weights`` is the path of the safetensors file (the JSON stores its name only).

    Cards from derain-mixed on also give ``family_scores``, ``family_input_scores`` and
    ``family_median_filter_scores``, the same tables over derain-synth's held-out ``families/``
    split (one row per rain family of :data:`derain.data.synth.FAMILIES`), and
    ``real_photo_scores``: mean NIQE/BRISQUE of real rainy photos (``input``) and of the model's
    results (``restored``), the photos described by ``real_photos``. Older cards leave them empty.

    ``working_size`` is the short side of the photos the model was trained at: on larger photos
    inference estimates the rain at that scale (:mod:`derain.inference.working_size`); ``None``
    (older cards) runs every photo at full resolution.
    """

    tag: str
    architecture: str
    config: Mapping[str, Any]
    weights: Path
    sha256: str
    data: str
    data_licence: str
    photo_licences: str
    recipe: str
    command: str
    steps: int
    wall_time_s: float
    hardware: str
    scores: Mapping[str, Mapping[str, float]]
    input_scores: Mapping[str, Mapping[str, float]]
    median_filter_scores: Mapping[str, Mapping[str, float]]
    seconds_per_megapixel: float
    speed_setting: Mapping[str, Any]
    family_scores: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    family_input_scores: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    family_median_filter_scores: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    real_photo_scores: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    real_photos: str = ""
    working_size: int | None = None

    @property
    def size_bytes(self) -> int:
        return self.weights.stat().st_size

    def psnr_gains(self) -> dict[str, float]:
        """PSNR of the restored images minus the rainy inputs', per preset (dB)."""
        return {p: self.scores[p]["psnr"] - self.input_scores[p]["psnr"] for p in self.scores}

    def summary(self) -> str:
        """One line for listings: architecture, training time and PSNR gain per preset."""
        gains = ", ".join(f"{p} {gain:+.1f} dB" for p, gain in self.psnr_gains().items())
        passes = f"; larger photos in two passes, the first at {self.working_size} px" if self.working_size else ""
        cpu = f" of {self.speed_setting['cpu']}" if "cpu" in self.speed_setting else ""
        return (
            f"{self.architecture}, {self.steps} steps in {self.wall_time_s / 60:.0f} min on "
            f"{self.hardware}; PSNR over the rainy input on derain-synth test: {gains}; "
            f"{self.seconds_per_megapixel:.1f} s/MP on {self.speed_setting['threads']} CPU threads{cpu}{passes}"
        )

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields["weights"] = self.weights.name
        return json.dumps(fields, indent=2) + "\n"


def read_card(path: str | Path) -> PretrainedCard:
    """Read and check the card ``path``; its weights file is resolved beside it."""
    path = Path(path)
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PretrainedError(f"{path}: not a readable JSON card ({err})") from err
    known = {f.name for f in dataclasses.fields(PretrainedCard)}
    optional = {f.name for f in dataclasses.fields(PretrainedCard) if f.default_factory is not dataclasses.MISSING or f.default is not dataclasses.MISSING}
    required = known - optional
    found = set(fields) if isinstance(fields, dict) else set()
    if not isinstance(fields, dict) or not required <= found <= known:
        raise PretrainedError(
            f"{path}: card fields differ from PretrainedCard; missing {sorted(required - found)}, "
            f"unexpected {sorted(found - known)}"
        )
    if fields["architecture"] not in list_models():
        raise PretrainedError(
            f"{path}: architecture {fields['architecture']!r} is not registered "
            f"(known: {', '.join(list_models())})"
        )
    for name, metrics in (("scores", METRICS), ("input_scores", METRICS), ("median_filter_scores", METRICS[:2])):
        table = fields[name]
        if set(table) != set(PRESETS) or any(set(row) != set(metrics) for row in table.values()):
            raise PretrainedError(f"{path}: {name} must give {list(metrics)} for each of {list(PRESETS)}")
    families = set(fields.get("family_scores", {}))
    for name, metrics in (("family_scores", METRICS), ("family_input_scores", METRICS), ("family_median_filter_scores", METRICS[:2])):
        table = fields.get(name, {})
        if set(table) != families or any(set(row) != set(metrics) for row in table.values()):
            raise PretrainedError(f"{path}: {name} must give {list(metrics)} for each family of family_scores")
    try:
        check_working_size(fields.get("working_size"))
    except ValueError as error:
        raise PretrainedError(f"{path}: {error}") from None
    fields["weights"] = path.parent / fields["weights"]
    return PretrainedCard(**fields)


def read_cards(folder: str | Path = PRETRAINED_DIR) -> dict[str, PretrainedCard]:
    """``{tag: card}`` for every ``*.json`` card in ``folder``; the first invalid card raises."""
    cards, broken = installed_cards(folder)
    if broken:
        raise next(iter(broken.values()))
    return cards


def installed_cards(folder: str | Path = PRETRAINED_DIR) -> tuple[dict[str, PretrainedCard], dict[str, PretrainedError]]:
    """Valid cards and, by tag, the errors of invalid ones, so one damaged card cannot stop ``import derain``."""
    cards, broken = {}, {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            card = read_card(path)
            if card.tag != path.stem:
                raise PretrainedError(f"{path}: tag {card.tag!r} differs from the file name {path.stem!r}")
        except PretrainedError as err:
            broken[path.stem] = err
            continue
        cards[card.tag] = card
    return cards, broken


class Catalogue(NamedTuple):
    """The shipped cards by tag, and the errors of the damaged ones by tag."""

    cards: dict[str, PretrainedCard]
    broken: dict[str, PretrainedError]


@functools.cache
def catalogue() -> Catalogue:
    """The cards shipped with derain, read once, on first use: reading them needs the registered
    architectures, so doing it at import would depend on the order of derain's imports."""
    return Catalogue(*installed_cards(PRETRAINED_DIR))


def pretrained_card(tag: str = DEFAULT_TAG) -> PretrainedCard:
    """The card of ``tag``; the error says why a shipped card is unusable, or lists the installed tags."""
    cards, broken = catalogue()
    if tag in broken:
        raise broken[tag]
    try:
        return cards[tag]
    except KeyError:
        available = ", ".join(sorted(cards)) or "none: this installation ships no pretrained weights"
        raise PretrainedError(
            f"no pretrained weights {tag!r} are installed (available: {available}); "
            "pass a checkpoint file instead (--weights PATH)"
        ) from None


def load_pretrained(tag: str = DEFAULT_TAG, *, architecture: str | None = None) -> nn.Module:
    """Build the model of ``tag``'s card and load its shipped weights, in eval mode.

    ``architecture``, when given, must be the card's (``create_model(name, pretrained=tag)``).
    The weights must be safetensors whose sha256 matches the card, so a damaged or swapped
    file is refused instead of silently giving other results.
    """
    card = pretrained_card(tag)
    if architecture is not None and architecture != card.architecture:
        raise PretrainedError(
            f"pretrained weights {tag!r} are for {card.architecture!r}, not {architecture!r}"
        )
    if card.weights.suffix != ".safetensors":
        raise PretrainedError(f"{card.weights}: pretrained weights must be a .safetensors file")
    if not card.weights.is_file():
        raise PretrainedError(f"{card.weights}: the weights file of {tag!r} is missing")
    digest = sha256_of(card.weights)
    if digest != card.sha256:
        raise PretrainedError(
            f"{card.weights}: sha256 {digest} differs from the card's {card.sha256}; "
            "the file is damaged or not the one the card describes"
        )
    model = load_checkpoint(card.weights, build(card.architecture, **card.config))
    # the scale the weights learnt rain at travels with the model to inference
    model.derain_card = dataclasses.replace(card_of(model), working_size=card.working_size)
    return model


def save_pretrained(model: nn.Module, folder: str | Path, **fields: Any) -> PretrainedCard:
    """Write ``<tag>.safetensors`` and ``<tag>.json`` into ``folder``; returns the card.

    ``fields`` are the card's fields except ``weights`` and ``sha256``, which are filled in
    from the written file. Weights over ``MAX_WEIGHTS_BYTES`` are refused.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = save_weights(folder / f"{fields['tag']}.safetensors", model, fields["architecture"], fields["config"])
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        weights.unlink()
        raise PretrainedError(
            f"{weights}: {size / 2**20:.1f} MB of weights exceed {MAX_WEIGHTS_BYTES // 2**20} MB; "
            "choose a smaller configuration"
        )
    card = PretrainedCard(weights=weights, sha256=sha256_of(weights), **fields)
    card_path = folder / f"{card.tag}.json"
    card_path.write_text(card.to_json(), encoding="utf-8")
    read_card(card_path)  # the card must read back: fails here, not on a user's machine
    return card

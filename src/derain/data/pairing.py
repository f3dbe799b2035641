"""Pair rainy inputs with clean targets, loudly.

Official deraining loaders pair files by the position of two sorted listings; one missing file
then shifts every later pair without any error. derain pairs by name (stem, template, regex or a
list file) and refuses unmatched files, listing them with both folders. Training, evaluation and
every ``derain data`` command go through this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import ImageReadError, read_image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
PAIRING_MODES = ("stem", "sorted")
_LISTED = 20  # unmatched files named in an error message; the rest are counted


@dataclass(frozen=True)
class Pair:
    """One rainy/clean pair.

    ``name`` is the stem written for outputs (``<name>.png``). ``label`` is a density label where
    the layout gives one (DID-Data folders, synthetic presets). ``side_by_side`` marks DID-Data
    files, where ``input`` and ``target`` are the same image: rainy left half, clean right half.
    """

    input: Path
    target: Path
    name: str
    label: str | None = None
    side_by_side: bool = False


class PairingError(ValueError):
    """Files that cannot be paired; the message names both folders and the files."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairingError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def describe_files(paths: Sequence[str | Path], limit: int = _LISTED) -> str:
    """``a.png, b.png, ... (and 7 more)``: the first ``limit`` names and a count of the rest."""
    names = [Path(p).name for p in paths[:limit]]
    more = len(paths) - len(names)
    return ", ".join(names) + (f" (and {more} more)" if more else "")


def _unmatched_error(input_dir: Path, target_dir: Path, inputs: Sequence[Path], targets: Sequence[Path], rule: str) -> PairingError:
    lines = [f"cannot pair {input_dir} (input) with {target_dir} (target) by {rule}:"]
    if inputs:
        lines.append(f"  {len(inputs)} input file(s) without a target: {describe_files(inputs)}")
    if targets:
        lines.append(f"  {len(targets)} target file(s) without an input: {describe_files(targets)}")
    return PairingError("\n".join(lines))


def _by_stem(paths: Iterable[Path], folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        if path.stem in found:
            raise PairingError(f"{folder}: two files share the stem {path.stem!r}: {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


def pair_folders(input_dir: str | Path, target_dir: str | Path, *, by: str = "stem") -> list[Pair]:
    """Pair the images of two folders.

    ``by="stem"`` pairs ``input/12.png`` with ``target/12.jpg`` (same stem, any image suffix) and
    fails on any file without a partner. ``by="sorted"`` reproduces the official loaders (n-th
    file with n-th file) and fails only when the counts differ; prefer ``"stem"``.
    """
    input_dir, target_dir = Path(input_dir), Path(target_dir)
    inputs, targets = list_images(input_dir), list_images(target_dir)
    if by == "sorted":
        if len(inputs) != len(targets):
            raise PairingError(
                f"cannot pair {input_dir} ({len(inputs)} images) with {target_dir} ({len(targets)} images) "
                "by sorted order: the counts differ"
            )
        return [Pair(i, t, i.stem) for i, t in zip(inputs, targets)]
    if by != "stem":
        raise ValueError(f"by={by!r}: expected one of {PAIRING_MODES}")
    input_stems, target_stems = _by_stem(inputs, input_dir), _by_stem(targets, target_dir)
    lonely_inputs = [p for s, p in input_stems.items() if s not in target_stems]
    lonely_targets = [p for s, p in target_stems.items() if s not in input_stems]
    if lonely_inputs or lonely_targets:
        raise _unmatched_error(input_dir, target_dir, lonely_inputs, lonely_targets, "stem")
    return [Pair(p, target_stems[s], s) for s, p in input_stems.items()]


def template_regex(template: str) -> re.Pattern[str]:
    """Compile a file-name template such as ``"rain-{id}x2.png"`` into a full-match regex.

    Each ``{field}`` matches a non-empty run without path separators; the same field used twice
    must match the same text. The suffix in the template is matched case-insensitively.
    """
    pattern, seen, position = "", set(), 0
    for match in re.finditer(r"\{(\w+)\}", template):
        pattern += re.escape(template[position : match.start()])
        field = match.group(1)
        pattern += f"(?P={field})" if field in seen else f"(?P<{field}>[^/]+?)"
        seen.add(field)
        position = match.end()
    pattern += re.escape(template[position:])
    if not seen:
        raise ValueError(f"template {template!r} has no {{field}}")
    return re.compile(pattern, re.IGNORECASE)


def pair_by_regex(
    input_dir: str | Path,
    target_dir: str | Path,
    input_regex: str | re.Pattern[str],
    target_name: str,
    *,
    name: str | None = None,
    label: str | None = None,
    allow_unused_targets: bool = False,
) -> list[Pair]:
    """Pair every input whose file name fully matches ``input_regex`` with a named target.

    ``target_name`` (and ``name``, default: the input stem) are ``str.format`` templates filled
    with the regex's named groups, e.g. ``r"(?P<id>\\d+)_(?P<k>\\d+)\\.jpg"`` with ``"{id}.jpg"``
    pairs DDN's 14 rainy images with one clean image. Inputs that do not match the regex are
    ignored; a matched input whose target is missing, or (unless ``allow_unused_targets``) a
    target no input refers to, is an error.
    """
    input_dir, target_dir = Path(input_dir), Path(target_dir)
    regex = re.compile(input_regex, re.IGNORECASE) if isinstance(input_regex, str) else input_regex
    targets = {p.name: p for p in list_images(target_dir)}
    targets_lower = {n.lower(): p for n, p in targets.items()}
    pairs, missing, used = [], [], set()
    for path in list_images(input_dir):
        match = regex.fullmatch(path.name)
        if match is None:
            continue
        fields = match.groupdict()
        wanted = target_name.format(**fields)
        target = targets.get(wanted) or targets_lower.get(wanted.lower())
        if target is None:
            missing.append(path)
            continue
        used.add(target)
        pairs.append(Pair(path, target, name.format(**fields) if name else path.stem, label))
    unused = [] if allow_unused_targets else [p for p in targets.values() if p not in used]
    if missing or unused:
        raise _unmatched_error(input_dir, target_dir, missing, unused, f"pattern {regex.pattern!r} -> {target_name!r}")
    if not pairs:
        raise PairingError(f"{input_dir}: no image matches {regex.pattern!r}")
    _check_unique_names(pairs, input_dir)
    return pairs


def pair_by_template(
    input_dir: str | Path,
    target_dir: str | Path,
    input_template: str,
    target_template: str,
    *,
    name: str | None = None,
    label: str | None = None,
) -> list[Pair]:
    """Pair by file-name templates: ``pair_by_template(a, b, "rain-{n}.png", "norain-{n}.png")``."""
    return pair_by_regex(input_dir, target_dir, template_regex(input_template), target_template, name=name, label=label)


def pair_from_list(list_file: str | Path, root: str | Path | None = None) -> list[Pair]:
    """Pairs from a text file of ``rainy clean`` lines (SPA-Data's ``real_world.txt``).

    Paths are relative to ``root`` (default: the list file's folder); a leading ``/`` is read as
    relative too, as in SPA's published lists. Blank lines and ``#`` comments are skipped. Names
    are the rainy stems, or the rainy paths joined by ``_`` where stems repeat.
    """
    list_file = Path(list_file)
    root = Path(root) if root is not None else list_file.parent
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PairingError(f"{list_file}: cannot read the list file ({error})") from error
    entries, missing = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise PairingError(f"{list_file}:{number}: expected 'rainy clean', got {line!r}")
        rainy, clean = (root / f.lstrip("/") for f in fields)
        missing += [p for p in (rainy, clean) if not p.is_file()]
        entries.append((rainy, clean))
    if missing:
        raise PairingError(f"{list_file}: {len(missing)} listed file(s) missing under {root}: {describe_files(missing)}")
    if not entries:
        raise PairingError(f"{list_file}: no pairs listed")
    stems = [rainy.stem for rainy, _ in entries]
    if len(set(stems)) == len(stems):
        return [Pair(rainy, clean, rainy.stem) for rainy, clean in entries]
    return [Pair(r, c, "_".join(r.relative_to(root).with_suffix("").parts)) for r, c in entries]


def _check_unique_names(pairs: Sequence[Pair], where: Path) -> None:
    seen: dict[str, Pair] = {}
    for pair in pairs:
        if pair.name in seen:
            raise PairingError(f"{where}: two pairs get the name {pair.name!r}: {seen[pair.name].input.name}, {pair.input.name}")
        seen[pair.name] = pair


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """``(rainy, clean)`` arrays of one pair; side-by-side files are cut in half."""
    if not pair.side_by_side:
        return read_image(pair.input), read_image(pair.target)
    both = read_image(pair.input)
    half = both.shape[1] // 2
    if both.shape[1] % 2:
        raise ImageReadError(pair.input, f"side-by-side image of odd width {both.shape[1]}")
    return both[:, :half], both[:, half:]

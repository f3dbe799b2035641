"""Readers for the published deraining dataset layouts; detection, checking and import.

Every reader returns ``{split: [Pair, ...]}`` where ``split`` is the folder of the pairs relative
to the dataset root (``"test/Rain100H"``; ``""`` for the root itself). Layouts:

- ``input-target``: Rain13K / MPRNet / Restormer / DRSformer trees, any folder holding
  ``input/`` and ``target/`` (``train/Rain13K/{input,target}``, ``test/<set>/{input,target}``).
- ``jorder``: Rain100L/H, Rain200L/H as released by JORDER, ``rain/X2/norain-Nx2.png`` <->
  ``norain/norain-N.png`` (``rain/norain-Nx2.png`` accepted too).
- ``prenet``: PReNet's ``rain-N.png`` <-> ``norain-N.png``, in one folder or in two.
- ``did``: DID-Data (DID-MDN, Zhang & Patel, CVPR 2018), side-by-side images (left rainy, right
  clean); ``Rain_Light/Medium/Heavy`` folders give the density label.
- ``ddn``: DDN-Data / Rain1400 (Fu et al., CVPR 2017), ``rainy_image/{id}_{k}.jpg`` (k = 1..14)
  <-> ``ground_truth/{id}.jpg``.
- ``spa``: SPA-Data (Wang et al., CVPR 2019), a list file of ``rainy gt`` lines, or the test
  layout ``N.png`` <-> ``Ngt.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import ImageReadError, write_image
from .pairing import (
    Pair,
    PairingError,
    describe_files,
    is_image,
    list_images,
    pair_by_regex,
    pair_folders,
    pair_from_list,
    read_pair,
)

Splits = dict[str, list[Pair]]


@dataclass(frozen=True)
class Layout:
    name: str
    summary: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], Splits]


def _split_name(folder: Path, root: Path) -> str:
    return folder.relative_to(root).as_posix() if folder != root else ""


def _folders(root: Path) -> list[Path]:
    return [root, *sorted(p for p in root.rglob("*") if p.is_dir() and not p.name.startswith("."))]


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image(p))


def _non_empty(splits: Splits, root: Path, layout: str) -> Splits:
    if not any(splits.values()):
        raise PairingError(f"{root}: no {layout} pairs found")
    return splits


# --- input/target (Rain13K, MPRNet, Restormer, DRSformer) -----------------------------------


def _input_target_folders(root: Path) -> list[Path]:
    return [f for f in _folders(root) if (f / "input").is_dir() and (f / "target").is_dir()]


def read_input_target(root: Path) -> Splits:
    splits = {_split_name(f, root): pair_folders(f / "input", f / "target") for f in _input_target_folders(root)}
    return _non_empty(splits, root, "input/target")


# --- JORDER ---------------------------------------------------------------------------------

_JORDER_RAIN = r"norain-(?P<n>\d+)x2\.\w+"


def _jorder_folders(root: Path) -> list[Path]:
    return [f for f in _folders(root) if (f / "norain").is_dir() and (f / "rain").is_dir()]


def read_jorder(root: Path) -> Splits:
    splits = {}
    for folder in _jorder_folders(root):
        rain = folder / "rain" / "X2" if (folder / "rain" / "X2").is_dir() else folder / "rain"
        suffix = _common_suffix(list_images(folder / "norain"), folder / "norain")
        splits[_split_name(folder, root)] = pair_by_regex(rain, folder / "norain", _JORDER_RAIN, "norain-{n}" + suffix, name="{n}")
    return _non_empty(splits, root, "JORDER")


def _common_suffix(paths: list[Path], folder: Path) -> str:
    suffixes = {p.suffix for p in paths}
    if len(suffixes) != 1:
        raise PairingError(f"{folder}: expected one image type, found {sorted(suffixes) or 'no images'}")
    return suffixes.pop()


# --- PReNet ---------------------------------------------------------------------------------

_PRENET_RAIN = re.compile(r"rain-(?P<n>\d+)\.\w+", re.IGNORECASE)
_PRENET_CLEAN = re.compile(r"norain-(?P<n>\d+)\.\w+", re.IGNORECASE)


def _matching(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    return [p for p in list_images(folder) if pattern.fullmatch(p.name)]


def read_prenet(root: Path) -> Splits:
    rain_folders = [f for f in _folders(root) if _matching(f, _PRENET_RAIN)]
    clean_folders = [f for f in _folders(root) if _matching(f, _PRENET_CLEAN)]
    splits = {}
    for rain in rain_folders:
        # The clean images sit beside the rainy ones, or in the parent / a sibling folder.
        candidates = [f for f in (rain, rain.parent, *sorted(rain.parent.iterdir())) if f in clean_folders]
        if not candidates:
            raise PairingError(f"{rain}: rain-N images but no folder of norain-N images beside it")
        clean = candidates[0]
        suffix = _common_suffix(_matching(clean, _PRENET_CLEAN), clean)
        splits[_split_name(rain, root)] = pair_by_regex(rain, clean, _PRENET_RAIN, "norain-{n}" + suffix, name="{n}", allow_unused_targets=clean == rain)
    return _non_empty(splits, root, "PReNet")


# --- DID-Data -------------------------------------------------------------------------------


def _did_label(path: Path, root: Path) -> str | None:
    for part in reversed(path.relative_to(root).parts[:-1]):
        match = re.search(r"(light|medium|heavy)", part, re.IGNORECASE)
        if match:
            return match.group(1).lower()
    return None


def read_did(root: Path) -> Splits:
    splits: Splits = {}
    for path in _images_under(root):
        split = _split_name(path.parent, root)
        splits.setdefault(split, []).append(Pair(path, path, path.stem, _did_label(path, root), side_by_side=True))
    return _non_empty(splits, root, "DID-Data")


def _detect_did(root: Path) -> bool:
    # An imported DID tree keeps the Rain_* folders but is input/target.
    return not _input_target_folders(root) and any(re.fullmatch(r"rain_(light|medium|heavy)", f.name, re.IGNORECASE) for f in _folders(root))


# --- DDN-Data -------------------------------------------------------------------------------

_DDN_RAIN = r"(?P<id>\d+)_(?P<k>\d+)\.\w+"


def _ddn_folders(root: Path) -> list[Path]:
    return [f for f in _folders(root) if (f / "rainy_image").is_dir() and (f / "ground_truth").is_dir()]


def read_ddn(root: Path) -> Splits:
    splits = {}
    for folder in _ddn_folders(root):
        rain, clean = folder / "rainy_image", folder / "ground_truth"
        suffix = _common_suffix(list_images(clean), clean)
        splits[_split_name(folder, root)] = pair_by_regex(rain, clean, _DDN_RAIN, "{id}" + suffix)
    return _non_empty(splits, root, "DDN-Data")


# --- SPA-Data -------------------------------------------------------------------------------


def _spa_lists(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.txt") if p.is_file() and _looks_like_pair_list(p))


def _looks_like_pair_list(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline().split()
    except (OSError, UnicodeDecodeError):
        return False
    return len(first) == 2 and all(Path(name).suffix.lower() in {".png", ".jpg"} for name in first)


def read_spa(root: Path) -> Splits:
    lists = _spa_lists(root)
    if lists:
        return {p.relative_to(root).with_suffix("").as_posix(): pair_from_list(p, root) for p in lists}
    images = _images_under(root)
    clean = {p.stem[:-2]: p for p in images if p.stem.lower().endswith("gt")}
    rainy = [p for p in images if not p.stem.lower().endswith("gt")]
    lonely_rainy = [p for p in rainy if p.stem not in clean]
    rainy_stems = {p.stem for p in rainy}
    lonely_clean = [p for stem, p in clean.items() if stem not in rainy_stems]
    if lonely_rainy or lonely_clean:
        raise PairingError(
            f"cannot pair SPA test images under {root} (N.png <-> Ngt.png): "
            f"{len(lonely_rainy)} rainy without gt: {describe_files(lonely_rainy)}; "
            f"{len(lonely_clean)} gt without rainy: {describe_files(lonely_clean)}"
        )
    return _non_empty({"": [Pair(p, clean[p.stem], p.stem) for p in rainy]}, root, "SPA-Data")


def _detect_spa(root: Path) -> bool:
    if _spa_lists(root):
        return True
    stems = {p.stem.lower() for p in _images_under(root)}
    return bool(stems) and any(s.endswith("gt") and s[:-2] in stems for s in stems)


LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout("ddn", "DDN-Data / Rain1400: rainy_image/{id}_{k} <-> ground_truth/{id}", lambda r: bool(_ddn_folders(r)), read_ddn),
        Layout("did", "DID-Data: side-by-side rainy|clean images in Rain_Light/Medium/Heavy", _detect_did, read_did),
        Layout("jorder", "JORDER Rain100/Rain200: rain/X2/norain-Nx2 <-> norain/norain-N", lambda r: bool(_jorder_folders(r)), read_jorder),
        Layout("input-target", "Rain13K / MPRNet / Restormer / DRSformer: input/ <-> target/", lambda r: bool(_input_target_folders(r)), read_input_target),
        Layout("prenet", "PReNet: rain-N <-> norain-N", lambda r: any(_matching(f, _PRENET_RAIN) for f in _folders(r)), read_prenet),
        Layout("spa", "SPA-Data: list file of 'rainy gt' lines, or N <-> Ngt", _detect_spa, read_spa),
    )
}


def detect_layout(root: str | Path) -> str:
    """The name of the layout of the dataset at ``root``; an error when none or several match."""
    root = Path(root)
    if not root.is_dir():
        raise PairingError(f"{root}: not a folder")
    found = [name for name, layout in LAYOUTS.items() if layout.detect(root)]
    if len(found) != 1:
        what = "no known layout" if not found else f"several layouts ({', '.join(found)})"
        raise PairingError(f"{root}: {what}; name one of {sorted(LAYOUTS)}")
    return found[0]


def read_layout(root: str | Path, layout: str | None = None) -> tuple[str, Splits]:
    """``(layout name, {split: pairs})`` for the dataset at ``root`` (layout detected if None)."""
    root = Path(root)
    name = layout or detect_layout(root)
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}: expected one of {sorted(LAYOUTS)}")
    return name, LAYOUTS[name].read(root)


def is_swapped(rainy: np.ndarray, clean: np.ndarray) -> bool:
    """True when the 'rainy' image is darker on average: rain only ever brightens."""
    return float(rainy.astype(np.float64).mean()) < float(clean.astype(np.float64).mean())


def check_pairs(pairs: list[Pair]) -> list[str]:
    """Every problem of a list of pairs: unreadable files, size mismatches, swapped halves."""
    problems = []
    for pair in pairs:
        try:
            rainy, clean = read_pair(pair)
        except ImageReadError as error:
            problems.append(f"unreadable: {error}")
            continue
        if rainy.shape[:2] != clean.shape[:2]:
            problems.append(
                f"size mismatch: {pair.input} is {rainy.shape[1]}x{rainy.shape[0]}, "
                f"{pair.target} is {clean.shape[1]}x{clean.shape[0]}"
            )
        elif pair.side_by_side and is_swapped(rainy, clean):
            problems.append(f"swapped halves: {pair.input} has the clean image on the left (its left half is darker)")
    return problems


def import_layout(root: str | Path, dest: str | Path, layout: str | None = None) -> tuple[str, Splits]:
    """Write ``dest/<split>/{input,target}/<name><suffix>`` from any layout; returns the new pairs.

    Files are hard-linked where possible, else copied; DID images are split into two PNGs and
    DDN's clean image is linked once per rainy image. Everything is written into a temporary
    folder beside ``dest`` and renamed at the end, so a failed import leaves nothing behind.
    """
    root, dest = Path(root), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; choose a new destination")
    name, splits = read_layout(root, layout)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".importing", dir=dest.parent))
    try:
        for split, pairs in splits.items():
            folder = staging / split
            (folder / "input").mkdir(parents=True)
            (folder / "target").mkdir()
            for pair in pairs:
                if pair.side_by_side:
                    rainy, clean = read_pair(pair)
                    if is_swapped(rainy, clean):
                        raise PairingError(f"swapped halves: {pair.input} has the clean image on the left")
                    write_image(folder / "input" / f"{pair.name}.png", rainy)
                    write_image(folder / "target" / f"{pair.name}.png", clean)
                else:
                    _link_or_copy(pair.input, folder / "input" / f"{pair.name}{pair.input.suffix.lower()}")
                    _link_or_copy(pair.target, folder / "target" / f"{pair.name}{pair.target.suffix.lower()}")
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return name, {split: pair_folders(dest / split / "input", dest / split / "target") for split in splits}


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)

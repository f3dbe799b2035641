"""Pairing and the published layouts, on miniature trees of generated images."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from derain.cli import data as data_cli
from derain.data.layouts import check_pairs, detect_layout, import_layout, read_layout
from derain.data.pairing import PairingError, pair_by_template, pair_folders, pair_from_list
from derain.imageio import read_image, write_image


def image(path: Path, value: int, size=(6, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.full((*size, 3), value, np.uint8))
    return path


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers())
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_stem_pairing_detects_the_sorted_order_trap(tmp_path):
    for n in range(1, 6):
        image(tmp_path / "input" / f"{n}.png", 100 + n)
        if n != 2:
            image(tmp_path / "target" / f"{n}.png", n)
    image(tmp_path / "target" / "6.png", 6)
    shifted = pair_folders(tmp_path / "input", tmp_path / "target", by="sorted")
    assert [(p.input.stem, p.target.stem) for p in shifted][1] == ("2", "3")  # silently wrong
    with pytest.raises(PairingError) as error:
        pair_folders(tmp_path / "input", tmp_path / "target")
    message = str(error.value)
    assert str(tmp_path / "input") in message and str(tmp_path / "target") in message
    assert "2.png" in message and "6.png" in message


def test_unmatched_files_listed_first_20_and_counted(tmp_path):
    for n in range(25):
        image(tmp_path / "a" / f"{n:02d}.png", 1)
    (tmp_path / "b").mkdir()
    with pytest.raises(PairingError, match=r"25 input file\(s\).*19\.png \(and 5 more\)"):
        pair_folders(tmp_path / "a", tmp_path / "b")


def test_sorted_pairing_refuses_different_counts(tmp_path):
    image(tmp_path / "a" / "1.png", 1)
    image(tmp_path / "a" / "2.png", 1)
    image(tmp_path / "b" / "1.png", 1)
    with pytest.raises(PairingError, match="counts differ"):
        pair_folders(tmp_path / "a", tmp_path / "b", by="sorted")


def test_template_and_list_file_pairing(tmp_path):
    image(tmp_path / "r" / "rain-7.png", 9)
    image(tmp_path / "c" / "norain-7.png", 1)
    (pair,) = pair_by_template(tmp_path / "r", tmp_path / "c", "rain-{n}.png", "norain-{n}.png", name="{n}")
    assert (pair.input.name, pair.target.name, pair.name) == ("rain-7.png", "norain-7.png", "7")
    (tmp_path / "list.txt").write_text("/r/rain-7.png c/norain-7.png\n\n")
    assert pair_from_list(tmp_path / "list.txt")[0].target == tmp_path / "c" / "norain-7.png"
    (tmp_path / "bad.txt").write_text("r/rain-7.png c/missing.png\n")
    with pytest.raises(PairingError, match="missing.png"):
        pair_from_list(tmp_path / "bad.txt")


def build(layout: str, root: Path) -> None:
    """A miniature tree of each published layout."""
    if layout == "input-target":
        for split, count in (("train/Rain13K", 3), ("test/Rain100H", 2), ("test/Test100", 1)):
            for n in range(count):
                image(root / split / "input" / f"{n}.png", 200)
                image(root / split / "target" / f"{n}.png", 50)
    elif layout == "jorder":
        for n in range(1, 4):
            image(root / "train" / "rain" / "X2" / f"norain-{n}x2.png", 200)
            image(root / "train" / "norain" / f"norain-{n}.png", 50)
    elif layout == "prenet":
        for n in (1, 2):
            image(root / "Rain100H" / f"rain-{n:03d}.png", 200)
            image(root / "Rain100H" / f"norain-{n:03d}.png", 50)
            image(root / "RainTrainL" / "rainy" / f"rain-{n}.png", 200)
            image(root / "RainTrainL" / f"norain-{n}.png", 50)
    elif layout == "did":
        for density in ("Heavy", "Medium", "Light"):
            for n in (1, 2):
                side = np.concatenate([np.full((6, 4, 3), 200, np.uint8), np.full((6, 4, 3), 50, np.uint8)], axis=1)
                (root / f"Rain_{density}" / "train2018new").mkdir(parents=True, exist_ok=True)
                write_image(root / f"Rain_{density}" / "train2018new" / f"{n}.jpg", side)
    elif layout == "ddn":
        for i in (1, 2):
            image(root / "training" / "ground_truth" / f"{i}.jpg", 50)
            for k in range(1, 15):
                image(root / "training" / "rainy_image" / f"{i}_{k}.jpg", 200)
    elif layout == "spa":
        for n in ("000", "001"):
            image(root / "real_test_1000" / f"{n}.png", 200)
            image(root / "real_test_1000" / f"{n}gt.png", 50)


EXPECTED = {
    "input-target": {"train/Rain13K": 3, "test/Rain100H": 2, "test/Test100": 1},
    "jorder": {"train": 3},
    "prenet": {"Rain100H": 2, "RainTrainL/rainy": 2},
    "did": {"Rain_Heavy/train2018new": 2, "Rain_Light/train2018new": 2, "Rain_Medium/train2018new": 2},
    "ddn": {"training": 28},
    "spa": {"": 2},
}


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_layout_detected_read_checked_and_imported(layout, tmp_path):
    build(layout, tmp_path / "src")
    assert detect_layout(tmp_path / "src") == layout
    name, splits = read_layout(tmp_path / "src")
    assert {split: len(pairs) for split, pairs in splits.items()} == EXPECTED[layout]
    assert all(check_pairs(pairs) == [] for pairs in splits.values())
    _, imported = import_layout(tmp_path / "src", tmp_path / "dest")
    assert {split: len(pairs) for split, pairs in imported.items()} == EXPECTED[layout]
    for pairs in imported.values():
        assert all(p.input.stem == p.target.stem for p in pairs)
        rainy, clean = (read_image(p) for p in (pairs[0].input, pairs[0].target))
        assert rainy.mean() > clean.mean() + 100  # rainy and clean not confused (DID halves split right)
    assert run_cli("check", str(tmp_path / "dest")) == 0


def test_names_and_labels_exact(tmp_path):
    build("jorder", tmp_path / "j")
    pairs = read_layout(tmp_path / "j")[1]["train"]
    assert [(p.name, p.input.name, p.target.name) for p in pairs][0] == ("1", "norain-1x2.png", "norain-1.png")
    build("ddn", tmp_path / "d")
    pairs = read_layout(tmp_path / "d")[1]["training"]
    assert sorted(p.name for p in pairs if p.target.name == "2.jpg") == sorted(f"2_{k}" for k in range(1, 15))
    build("did", tmp_path / "did")
    splits = read_layout(tmp_path / "did")[1]
    assert {s: {p.label for p in pairs} for s, pairs in splits.items()} == {
        "Rain_Heavy/train2018new": {"heavy"}, "Rain_Light/train2018new": {"light"}, "Rain_Medium/train2018new": {"medium"}
    }


def test_problems_reported_and_import_leaves_nothing(tmp_path, capsys):
    build("did", tmp_path / "src")
    swapped = np.concatenate([np.full((6, 4, 3), 50, np.uint8), np.full((6, 4, 3), 200, np.uint8)], axis=1)
    write_image(tmp_path / "src" / "Rain_Light" / "train2018new" / "2.jpg", swapped)
    assert run_cli("check", str(tmp_path / "src")) == 1
    err = capsys.readouterr().err
    assert "swapped halves" in err and "Rain_Light/train2018new/2.jpg" in err and "Rain_Heavy" not in err
    assert run_cli("import", "did", str(tmp_path / "src"), str(tmp_path / "dest")) == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "src"]

    build("input-target", tmp_path / "it")
    image(tmp_path / "it" / "test" / "Test100" / "target" / "0.png", 50, size=(7, 8))
    (tmp_path / "it" / "test" / "Rain100H" / "input" / "1.png").write_bytes(b"not an image")
    assert run_cli("check", str(tmp_path / "it")) == 1
    err = capsys.readouterr().err
    assert "size mismatch" in err and "is 8x6" in err and "is 8x7" in err
    assert "unreadable" in err and "Rain100H/input/1.png" in err


def test_training_reads_pairs_as_the_layouts_do(tmp_path):
    """One pair reader: a side-by-side file of odd width is refused by both, not cropped by one."""
    import torch

    from derain.data.paired import BadPairsError, check_pairs as check_training_pairs, load_pair
    from derain.data.pairing import Pair, read_pair
    from derain.imageio import ImageReadError, to_tensor

    rng = np.random.default_rng(0)
    even, odd = tmp_path / "even.png", tmp_path / "odd.png"
    write_image(even, rng.integers(0, 256, (6, 10, 3), dtype=np.uint8))
    write_image(odd, rng.integers(0, 256, (6, 11, 3), dtype=np.uint8))
    pair = Pair(even, even, "even", side_by_side=True)
    rainy, clean = load_pair(pair)
    assert all(torch.equal(t, to_tensor(a)[0][0]) for t, a in zip((rainy, clean), read_pair(pair)))
    with pytest.raises(ImageReadError, match="odd width 11"):
        read_pair(Pair(odd, odd, "odd", side_by_side=True))
    with pytest.raises(BadPairsError, match="odd width 11"):
        check_training_pairs([Pair(odd, odd, "odd", side_by_side=True)])

"""The clean-photo corpus: manifest, split rule, sha256 refusal, and the derain-synth checksums."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.data.benchmark import add_scene_lines, checksums, make_pairs, pair_seed
from derain.data.photos import CorpusError, build_corpus, read_manifest, split_of
from derain.data.synth import FAMILIES

HEADER = "package\tversion\tpath_in_package\twidth\theight\tbytes\tsha256\tlicence\n"


def test_manifest_has_72_photos_with_licences_and_a_fixed_split():
    photos = read_manifest()
    assert len(photos) == 72 and len({p.name for p in photos}) == 72
    assert all(p.licence and len(p.sha256) == 64 for p in photos)
    splits = split_of(photos)
    assert sorted(splits.values()).count("test") == 8 and sorted(splits.values()).count("val") == 8
    assert split_of(list(reversed(photos))) == splits  # by content hash, not manifest order
    assert splits["BytheWater"] in {"train", "val", "test"}  # KDE's <Name>/contents/images/WxH.jpg


def fake_deb(folder: Path, photo_bytes: bytes) -> Path:
    root = folder / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: fake-photos\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    (root / "usr/share/backgrounds").mkdir(parents=True)
    (root / "usr/share/backgrounds/field.jpg").write_bytes(photo_bytes)
    (root / "usr/share/doc/fake-photos").mkdir(parents=True)
    (root / "usr/share/doc/fake-photos/copyright").write_text("License: CC0-1.0\n")
    (folder / "debs").mkdir()
    subprocess.run(["dpkg-deb", "-b", str(root), str(folder / "debs" / "fake.deb")], check=True, capture_output=True)
    return folder / "debs"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_corpus_built_from_debs_and_wrong_sha256_refused_by_name(tmp_path):
    photo = tmp_path / "field.jpg"
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(photo)
    debs = fake_deb(tmp_path, photo.read_bytes())
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(HEADER + f"fake-photos\t1\t/usr/share/backgrounds/field.jpg\t60\t40\t0\t{digest}\tCC0-1.0\n")
    counts = build_corpus(tmp_path / "corpus", debs=debs, manifest=manifest)
    assert counts == {"train": 0, "val": 0, "test": 1}
    assert Image.open(tmp_path / "corpus" / "test" / "field.png").size == (30, 20)
    assert "test/field.png\tCC0-1.0" in (tmp_path / "corpus" / "LICENSES.tsv").read_text()

    manifest.write_text(HEADER + f"fake-photos\t1\t/usr/share/backgrounds/field.jpg\t60\t40\t0\t{'0' * 64}\tCC0-1.0\n")
    with pytest.raises(CorpusError, match="field.jpg.*does not match.*refused"):
        build_corpus(tmp_path / "corpus2", debs=debs, manifest=manifest)
    assert not (tmp_path / "corpus2").exists() and not list(tmp_path.glob(".corpus2*"))


def test_scene_lines_are_on_both_sides_of_a_pair(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(np.full((120, 160, 3), 100, np.uint8)).save(clean / "flat.png")
    assert make_pairs(clean, tmp_path / "out", preset="light", per_image=4, seed=1, scene_lines=True) == 4
    drawn = [json.loads(line) for line in (tmp_path / "out" / "rain.jsonl").read_text().splitlines()]
    for line in drawn:
        target = np.asarray(Image.open(tmp_path / "out" / "target" / f"{line['name']}.png")).astype(int)
        rainy = np.asarray(Image.open(tmp_path / "out" / "input" / f"{line['name']}.png")).astype(int)
        lines = np.abs(target - 100).max(axis=2) > 40
        assert 1 <= line["scene_lines"] <= 6 and 0 < lines.mean() < 0.25  # thin structures on the clean side
        assert (rainy >= target).all()  # the rain only brightens: the lines are in the input too
    photo = np.full((120, 160, 3), 100, np.uint8)
    assert add_scene_lines(photo, 3)[0].tobytes() == add_scene_lines(photo, 3)[0].tobytes() != add_scene_lines(photo, 4)[0].tobytes()


def test_benchmark_pairs_are_reproducible_and_seeds_stable(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(np.full((50, 70, 3), 90, np.uint8)).save(clean / "a.png")
    make_pairs(clean, tmp_path / "one", preset="heavy", short_side=40)
    make_pairs(clean, tmp_path / "two", preset="heavy", short_side=40)
    assert checksums(tmp_path / "one") == checksums(tmp_path / "two")
    assert Image.open(tmp_path / "one" / "input" / "a_0.png").size == (56, 40)
    assert pair_seed(0, "a", 0) == pair_seed(0, "a", 0) != pair_seed(0, "a", 1)


def test_recorded_benchmark_checksums_cover_every_folder():
    lines = (Path(__file__).parents[1] / "data" / "derain-synth.sha256").read_text().splitlines()
    folders = {line.split("  ")[1].rsplit("/", 2)[0] for line in lines if "/input/" in line}
    presets = {f"{split}/{preset}" for split in ("test", "train") for preset in ("light", "medium", "heavy")}
    assert folders == presets | {f"families/{family}" for family in FAMILIES}
    assert sum("test/heavy/input/" in line for line in lines) == 8 and sum("train/heavy/input/" in line for line in lines) == 56
    assert all(sum(f"families/{family}/input/" in line for line in lines) == 8 for family in FAMILIES)

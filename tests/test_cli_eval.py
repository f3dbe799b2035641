"""``derain eval`` on folders, as a user runs it."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.cli import eval as eval_cli

REF = Path(__file__).parent / "data" / "metrics_ref"
PAIRS = json.loads((REF / "refs.json").read_text())["pairs"]
NAMES = ["chelsea_noise", "coffee_shift_100x77", "astronaut_tiny_9x14", "camera_gray_noise"]


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv, "--no-progress"])
    return args.func(args)


@pytest.fixture
def folders(tmp_path):
    restored, clean = tmp_path / "restored", tmp_path / "clean"
    restored.mkdir(), clean.mkdir()
    for name in NAMES:
        shutil.copy(REF / PAIRS[name]["restored"], restored / f"{name}.png")
        shutil.copy(REF / PAIRS[name]["gt"], clean / f"{name}.png")
    return restored, clean, tmp_path / "out"


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {row["name"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("protocol", ["rain100", "ddn"])
def test_eval_writes_reference_values(folders, protocol, capsys):
    restored, clean, out = folders
    assert _run("--restored", str(restored), "--clean", str(clean), "--protocol", protocol, "--out", str(out)) == 0
    rows = _csv(out / "metrics.csv")
    for name in NAMES:
        for metric in ("psnr", "ssim"):
            reference = PAIRS[name][protocol][metric]
            cell = rows[name][metric]
            if reference is None:
                assert cell == ""
            elif isinstance(reference, str):
                assert cell == reference
            else:
                assert float(cell) == pytest.approx(reference, abs=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    finite = [PAIRS[n][protocol]["psnr"] for n in NAMES if isinstance(PAIRS[n][protocol]["psnr"], float)]
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(finite))
    assert summary["metrics"]["psnr"]["count"] == len(finite)
    assert "psnr" in capsys.readouterr().out


def test_unmatched_files_are_listed(folders, capsys):
    restored, clean, out = folders
    (clean / "chelsea_noise.png").rename(clean / "extra.png")
    assert _run("--restored", str(restored), "--clean", str(clean), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "chelsea_noise.png" in err and "extra.png" in err


def test_sorted_pairing_ignores_names(folders):
    restored, clean, out = folders
    for path in sorted(clean.iterdir()):
        path.rename(clean / f"gt_{path.name}")
    assert _run("--restored", str(restored), "--clean", str(clean), "--pairing", "sorted", "--out", str(out)) == 0
    assert float(_csv(out / "metrics.csv")["chelsea_noise"]["psnr"]) == pytest.approx(PAIRS["chelsea_noise"]["rain100"]["psnr"])


def test_bad_files_are_named_and_the_rest_evaluated(folders, capsys):
    restored, clean, out = folders
    (restored / "chelsea_noise.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(restored / "coffee_shift_100x77.png")
    Image.fromarray(np.zeros((256, 300), np.uint16)).save(restored / "camera_gray_noise.png")
    assert _run("--restored", str(restored), "--clean", str(clean), "--out", str(out), "--workers", "2") == 1
    err = capsys.readouterr().err
    assert "chelsea_noise.png" in err
    assert "20x30" in err and "100x77" in err
    assert "uint16" in err and "peak at 255" in err
    assert list(_csv(out / "metrics.csv")) == ["astronaut_tiny_9x14"]


def test_no_reference_mode(tmp_path):
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "iqa" / "I03.png", restored)
    assert _run("--restored", str(restored), "--out", str(tmp_path)) == 0
    row = _csv(tmp_path / "metrics.csv")["I03"]
    assert float(row["niqe"]) == pytest.approx(15.6538, rel=1e-3)
    assert float(row["brisque"]) == pytest.approx(94.6452, rel=1e-3)


def _photo_with_black_sky() -> np.ndarray:
    """Texture below, a saturated-black 96-pixel band above: flat regions of real photos."""
    photo = np.random.default_rng(3).integers(40, 200, (288, 192, 3), dtype=np.uint8)
    photo[:96] = 0
    return photo


def test_niqe_of_flat_regions_follows_the_reference():
    from derain.metrics._nss import aggd_fit
    from derain.metrics.niqe import niqe

    shape, left, right = aggd_fit(np.zeros((96, 96)))
    assert shape == pytest.approx(0.2) and np.isnan(left) and np.isnan(right)  # pyiqa's values
    assert np.isfinite(niqe(_photo_with_black_sky()))


def test_an_image_without_a_value_is_named_with_the_reason(tmp_path, capsys):
    restored = tmp_path / "restored"
    restored.mkdir()
    Image.fromarray(_photo_with_black_sky()).save(restored / "sky.png")
    Image.fromarray(np.zeros((192, 192), np.uint8)).save(restored / "black.png")
    assert _run("--restored", str(restored), "--out", str(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "black: no niqe value: NIQE is undefined: 0 of 4 96x96 blocks have texture" in err
    assert "black: no brisque value" in err
    rows = _csv(tmp_path / "metrics.csv")
    assert rows["black"]["niqe"] == "" and float(rows["sky"]["niqe"]) > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metrics"]["niqe"]["no_value"] == 1 and summary["no_value"][0]["metric"] == "niqe"


def test_the_brisque_model_ships_with_the_live_copyright_notice():
    from importlib.resources import files

    data = files("derain.metrics").joinpath("data")
    notice = data.joinpath("LICENSE-LIVE-BRISQUE.txt").read_text()
    assert "Copyright (c) 2011 The University of Texas at Austin" in notice
    assert "COPYRIGHT NOTICE ENDS WITH THIS LINE" in notice
    assert "LICENSE-LIVE-BRISQUE.txt" in data.joinpath("NOTICE.md").read_text()


def test_without_out_each_eval_gets_a_fresh_folder_beside_the_restored_images(folders, capsys):
    restored, clean, _ = folders
    assert _run("--restored", str(restored), "--clean", str(clean)) == 0
    assert _run("--restored", str(restored), "--clean", str(clean), "--metrics", "psnr") == 0
    first, second = restored.parent / "restored_eval", restored.parent / "restored_eval-2"
    assert list(_csv(first / "metrics.csv")["chelsea_noise"]) == ["name", "psnr", "ssim"]
    assert list(_csv(second / "metrics.csv")["chelsea_noise"]) == ["name", "psnr"]  # the first is kept
    out = capsys.readouterr().out
    assert f"wrote {first / 'metrics.csv'} and {first / 'summary.json'}" in out
    assert f"{second / 'summary.json'}" in out


def test_without_out_a_dataset_eval_goes_to_a_new_folder_here(tmp_path, weights, monkeypatch):
    data = tmp_path / "Rain200H"
    for side in ("input", "target"):
        (data / side).mkdir(parents=True)
        shutil.copy(REF / PAIRS["chelsea_noise"]["gt"], data / side / "im1.png")
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert _run(str(data), "--weights", str(weights), "--device", "cpu") == 0
    assert (tmp_path / "eval-Rain200H" / "summary.json").is_file()
    assert (tmp_path / "eval-Rain200H-2" / "summary.json").is_file()

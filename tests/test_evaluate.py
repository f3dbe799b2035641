"""derain.evaluate and ``derain eval DATA_DIR``: one code path, the same numbers as ``derain run`` then ``derain eval``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import derain
from conftest import cli
from derain.cli import eval as eval_command
from derain.cli import run as run_command
from derain.imageio import read_image, to_tensor, write_image
from derain.metrics import psnr_ssim_matlab


@pytest.fixture
def dataset(tmp_path):
    """A dataset folder in the input/target layout: three rainy/clean pairs of odd sizes."""
    rng = np.random.default_rng(0)
    for side in ("input", "target"):
        (tmp_path / "data" / side).mkdir(parents=True)
    for index, size in enumerate([(24, 40), (33, 17), (40, 40)]):
        clean = rng.integers(0, 200, (*size, 3), dtype=np.uint8)
        rainy = np.minimum(clean.astype(int) + rng.integers(0, 56, clean.shape), 255).astype(np.uint8)
        write_image(tmp_path / "data" / "input" / f"im{index}.png", rainy)
        write_image(tmp_path / "data" / "target" / f"im{index}.png", clean)
    return tmp_path / "data"


def _rows(path):
    with open(path) as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_eval_of_a_model_equals_run_then_eval(dataset, weights, tmp_path):
    assert cli(run_command, ["run", str(dataset / "input"), "-o", str(tmp_path / "restored"), "--weights", str(weights), "--tile", "16", "--overlap", "4"]) == 0
    assert cli(eval_command, ["eval", "--restored", str(tmp_path / "restored"), "--clean", str(dataset / "target"), "--out", str(tmp_path / "two")]) == 0
    assert cli(eval_command, ["eval", str(dataset), "--weights", str(weights), "--tile", "16", "--overlap", "4", "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    two, one = _rows(tmp_path / "two" / "metrics.csv"), _rows(tmp_path / "one" / "metrics.csv")
    assert sorted(two) == sorted(one) == ["im0", "im1", "im2"]
    for name in two:
        assert one[name] == two[name]


def test_evaluate_takes_tensors_like_files_and_leaves_training_mode(dataset, weights):
    model = derain.load_checkpoint(weights).train()
    from_files = derain.evaluate(model, dataset, tile=None)
    assert model.training
    tensors = []
    for name in ("im0", "im1", "im2"):
        rainy, clean = (to_tensor(read_image(dataset / side / f"{name}.png"))[0][0] for side in ("input", "target"))
        tensors.append((name, rainy, clean))
    from_tensors = derain.evaluate(model, tensors, tile=None)
    assert from_tensors.rows == from_files.rows and not from_files.failures
    restored = derain.derain(read_image(dataset / "input" / "im1.png"), model, tile=None, device="cpu")
    expected = psnr_ssim_matlab(restored, read_image(dataset / "target" / "im1.png"), "rain100")
    assert (from_files.rows[1]["psnr"], from_files.rows[1]["ssim"]) == expected


def test_unreadable_pairs_are_recorded_and_bad_arguments_named(dataset, weights, tmp_path, capsys):
    (dataset / "input" / "im2.png").write_bytes(b"not a png")
    evaluation = derain.evaluate(derain.load_checkpoint(weights), dataset)
    assert [row["name"] for row in evaluation.rows] == ["im0", "im1"]
    assert evaluation.failures[0][0] == "im2" and "im2.png" in evaluation.failures[0][1]
    with pytest.raises(ValueError, match="unknown metric"):
        derain.evaluate(torch.nn.Identity(), dataset, metrics=("lpips",))
    assert cli(eval_command, ["eval", "--out", str(tmp_path)]) == 2
    assert "give either DATA_DIR" in capsys.readouterr().err

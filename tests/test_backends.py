"""The fast paths of ``derain run``: ``--compile``, ``--backend onnxruntime`` and bf16 on CPUs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import derain
from derain.cli import run as run_command
from derain.imageio import read_image, write_image
from derain.inference import Deraining, backends
from conftest import cli

TOLERANCE = 1e-4  # as derain export's ONNX parity


def tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return derain.create_model(name, **derain.model_card(name).tiny_config).eval()


def local_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 3, padding=1)).eval()


def max_difference(model: nn.Module, image: torch.Tensor, **fast) -> float:
    """Largest difference between a fast path and eager fp32, tiled alike (tiles, an edge, a batch)."""
    settings = dict(tile=64, overlap=8, device="cpu", batch_size=3)
    eager = Deraining(model, **settings).restore(image)
    return (Deraining(model, **settings, **fast).restore(image) - eager).abs().max().item()


def test_onnxruntime_runs_tiles_and_partial_batches_like_eager():
    pytest.importorskip("onnxruntime")
    # 5 tiles in batches of 3 (a partial last batch), and an image smaller than a tile.
    assert max_difference(local_cnn(), torch.rand(1, 3, 64, 150), backend="onnxruntime") <= TOLERANCE
    assert max_difference(local_cnn(), torch.rand(2, 3, 40, 24), backend="onnxruntime") <= TOLERANCE


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("name", derain.list_models())
def test_onnxruntime_matches_eager(name):
    pytest.importorskip("onnxruntime")
    side = 2 * derain.model_card(name).min_size if name == "dmsr" else 72
    assert max_difference(tiny(name), torch.rand(1, 3, side, side + 16), backend="onnxruntime") <= TOLERANCE


def test_compile_runs_tiles_and_partial_batches_like_eager():
    assert max_difference(local_cnn(), torch.rand(1, 3, 64, 150), compile=True) <= TOLERANCE


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("name", derain.list_models())
def test_compile_matches_eager_for_every_model(name):
    side = 2 * derain.model_card(name).min_size if name == "dmsr" else 72
    assert max_difference(tiny(name), torch.rand(1, 3, side, side + 16), compile=True) <= TOLERANCE


def test_compile_keeps_the_first_auto_tile(monkeypatch):
    derainer = Deraining(tiny("drsformer"), device="cpu", compile=True)
    tiles = iter([128, 96])
    monkeypatch.setattr(derainer, "_memory_tile", lambda x: next(tiles))
    big = torch.rand(1, 3, 600, 600)
    assert [derainer.auto_tile(big), derainer.auto_tile(big)] == [128, 128]


def test_bf16_without_cpu_support_runs_fp32_with_a_warning(monkeypatch):
    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: False)
    model, image = local_cnn(), torch.rand(1, 3, 32, 32)
    with pytest.warns(backends.BackendWarning, match="no bfloat16 instructions.*running fp32"):
        derainer = Deraining(model, device="cpu", precision="bf16")
    assert derainer.precision == "fp32"
    assert torch.equal(derainer.restore(image), Deraining(model, device="cpu").restore(image))


def test_backend_errors():
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, got 'tvm'"):
        Deraining(local_cnn(), device="cpu", backend="tvm")
    with pytest.raises(ValueError, match="onnxruntime backend runs fp32 only"):
        Deraining(local_cnn(), device="cpu", backend="onnxruntime", precision="fp16")
    with pytest.raises(ValueError, match="compile applies to the torch backend"):
        Deraining(local_cnn(), device="cpu", backend="onnxruntime", compile=True)


@pytest.fixture
def photo(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", np.random.default_rng(0).integers(0, 256, (48, 72, 3), dtype=np.uint8))
    return folder


def test_missing_onnxruntime_names_the_extra(monkeypatch, photo, weights, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    argv = ["run", str(photo), "-o", str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu"]
    assert cli(run_command, argv + ["--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'derain run: error: ONNX Runtime is not installed: pip install "derain[export]"'


@pytest.mark.backends  # 98 s on a 2-core AVX2 machine (the ONNX export); the API's parity test stays in CI
def test_cli_onnxruntime_writes_what_eager_writes(photo, weights, tmp_path):
    pytest.importorskip("onnxruntime")
    argv = [str(photo), "--weights", str(weights), "--device", "cpu", "--tile", "32", "--overlap", "8"]
    assert cli(run_command, ["run", *argv, "-o", str(tmp_path / "eager")]) == 0
    assert cli(run_command, ["run", *argv, "-o", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    eager, ort = (read_image(tmp_path / out / "a.png").astype(int) for out in ("eager", "ort"))
    assert np.abs(eager - ort).max() <= 1  # 8-bit outputs: rounding may differ by one level

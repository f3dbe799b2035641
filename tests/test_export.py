"""``derain export``: ONNX and TorchScript files that match eager PyTorch."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from torch import nn

import derain
from derain.cli import export as export_command


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="derain")
    export_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


class MultiScaleCNN(nn.Module):
    """A small model with DMSR's output convention: (full, 1/2) resolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        restored = x + self.body(x)
        return restored, restored[..., ::2, ::2]


@pytest.mark.slow
def test_onnx_dynamic_size_parity(tmp_path):
    pytest.importorskip("onnxruntime")
    model = MultiScaleCNN().eval()
    card = dataclasses.replace(derain.inference.inference_card(model), size_multiple=8)
    path = export_command.export_onnx(model, tmp_path / "m.onnx", card, 32)
    for shape in [(32, 32), (40, 56), (8, 120)]:
        error = export_command.parity_error(model, path, "onnx", torch.rand(1, 3, *shape))
        assert error <= export_command.ONNX_TOLERANCE


@pytest.mark.slow
def test_onnx_cli_checks_parity(tmp_path, weights, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    # The registered transformers take minutes to export on a small CPU; the command's
    # wiring is the same for any module.
    monkeypatch.setattr(export_command, "load_checkpoint", lambda path, name: MultiScaleCNN().eval())
    output = tmp_path / "m.onnx"
    assert cli(["export", "drsformer", "--weights", str(weights), "--format", "onnx", "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    # an unregistered module has size multiple 1: the second check is 66 wide, 65 high
    assert "parity 64x64" in printed and "parity 66x65" in printed and output.is_file()


def test_onnx_cli_names_static_when_dynamic_sizes_cannot_be_traced(tmp_path, weights, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")

    def untraceable(model, output, card, size, dynamic=True):  # as DMSR's FFTs fail with symbolic sizes
        raise torch.onnx.OnnxExporterError("Failed to export the model with torch.export.\nmore")

    monkeypatch.setattr(export_command, "export_onnx", untraceable)
    argv = ["export", "drsformer", "--weights", str(weights), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert "drsformer cannot be exported to ONNX with dynamic height and width (Failed to export the model" in err
    assert "--static --size N" in err and "more" not in err


def test_torchscript_of_a_registered_model(tmp_path, weights, capsys):
    output = tmp_path / "drsformer.pt"
    assert cli(["export", "drsformer", "--weights", str(weights), "--format", "torchscript",
                "-o", str(output), "--size", "32"]) == 0
    assert "parity 48x40" in capsys.readouterr().out
    scripted = torch.jit.load(str(output))
    model = derain.load_checkpoint(weights)
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=0)


def test_torchscript_returns_the_full_resolution_output(tmp_path):
    model = MultiScaleCNN().eval()
    path = export_command.export_torchscript(model, tmp_path / "m.pt", torch.rand(1, 3, 16, 16))
    x = torch.rand(1, 3, 24, 8)
    assert torch.jit.load(str(path))(x).shape == x.shape
    assert export_command.parity_error(model, path, "torchscript", x) == 0


def test_export_errors(tmp_path, weights, capsys):
    argv = ["export", "dmsr", "--format", "torchscript", "-o", str(tmp_path / "m.pt")]
    assert cli(argv + ["--weights", str(tmp_path / "missing.pth")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    argv = ["export", "drsformer", "--format", "torchscript", "-o", str(tmp_path / "m.pt")]
    assert cli(argv + ["--weights", str(weights), "--size", "30"]) == 2
    assert "--size 30 must be a multiple of 8" in capsys.readouterr().err


def test_a_shipped_pretrained_tag_exports_like_a_file(tmp_path, capsys):
    output = tmp_path / "derain-synth.pt"
    assert cli(["export", "drsformer", "--weights", "derain-synth", "--format", "torchscript",
                "-o", str(output), "--size", "32"]) == 0
    assert "parity 48x40" in capsys.readouterr().out
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        expected = derain.create_model("drsformer", pretrained="derain-synth")(x)
        torch.testing.assert_close(torch.jit.load(str(output))(x), expected, atol=1e-5, rtol=0)


def test_a_pretrained_tag_of_another_architecture_is_refused(tmp_path, capsys):
    assert cli(["export", "dmsr", "--weights", "derain-synth", "--format", "torchscript",
                "-o", str(tmp_path / "m.pt")]) == 2
    assert "pretrained weights 'derain-synth' are for 'drsformer', not 'dmsr'" in capsys.readouterr().err


def test_a_shipped_pretrained_tag_exports_to_a_hub_folder(tmp_path):
    output = tmp_path / "derain-synth-hub"
    assert cli(["export", "drsformer", "--weights", "derain-synth", "--format", "hub", "-o", str(output)]) == 0
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        expected = derain.create_model("drsformer", pretrained="derain-synth")(x)
        torch.testing.assert_close(derain.load_checkpoint(output)(x), expected, rtol=0, atol=0)

"""Parity with the official implementations on the golden fixtures (shared/golden/README.md)."""

from __future__ import annotations

import json

import pytest
import torch

import derain
from conftest import GOLDEN, as_list, synth_state_dict

FIXTURES = sorted(GOLDEN.glob("*/*.pt"))
MANIFESTS = sorted(GOLDEN.glob("*/manifest_*.json"))


def _load(path):
    fx = torch.load(path, weights_only=True)
    model = derain.create_model(fx["model"], **fx["config"]).double()
    model.load_state_dict(synth_state_dict(fx["manifest"], fx["seed"]), strict=True)
    return fx, model.eval()


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_float64_parity(path):
    fx, model = _load(path)
    with torch.no_grad():
        outputs = as_list(model(fx["input"]))
    assert len(outputs) == len(fx["outputs"])
    for out, ref in zip(outputs, fx["outputs"]):
        assert out.shape == ref.shape
        bound = 1e-8 * max(1.0, ref.abs().max().item())
        assert (out - ref).abs().max().item() <= bound


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_float32_parity(path):
    fx, model = _load(path)
    if max(ref.abs().max().item() for ref in fx["outputs"]) > 1e6:
        pytest.skip("reference exceeds float32 range; the official code overflows there too")
    with torch.no_grad():
        outputs = as_list(model.float()(fx["input"].float()))
    for out, ref in zip(outputs, fx["outputs"]):
        rel = torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)
        assert rel.item() <= 1e-4


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_state_dict_layout_matches_official(path):
    manifest = json.loads(path.read_text())
    model = derain.create_model(manifest["model"], **manifest["config"])
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    official = {k: (shape, dtype) for k, shape, dtype in manifest["state_dict"]}
    assert ours == official
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]

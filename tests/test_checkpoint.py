"""Loading the formats official checkpoints are published in, and refusing unsafe files."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

import derain
from derain import CheckpointError


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(1)
    return derain.create_model(name, **derain.model_card(name).tiny_config)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


WRAPPERS = {
    "basicsr_params": lambda sd: {"params": sd},
    "basicsr_params_ema": lambda sd: {"params_ema": sd},
    "mprnet": lambda sd: {"state_dict": sd, "epoch": 7, "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]}},
    "bare": lambda sd: sd,
    "dataparallel": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1},
    "compiled": lambda sd: {"params": {f"_orig_mod.{k}": v for k, v in sd.items()}},
    "compiled_ddp": lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
}


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_published_wrappers_load_into_a_model(wrapper, tmp_path):
    source = _tiny("drsformer")
    path = tmp_path / "official.pth"
    torch.save(WRAPPERS[wrapper](source.state_dict()), path)
    target = derain.create_model("drsformer", **derain.model_card("drsformer").tiny_config)
    loaded = derain.load_checkpoint(path, model=target)
    assert loaded is target and not loaded.training
    _assert_same_weights(source, loaded)


def test_bare_safetensors_with_module_prefix(tmp_path):
    source = _tiny("dmsr")
    path = tmp_path / "w.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(path))
    _assert_same_weights(source, derain.load_checkpoint(path, model="dmsr"))


@pytest.mark.parametrize("name", ["drsformer", "cpraformer", "dmsr", "ddsaformer"])
def test_model_is_detected_from_parameter_names(name, tmp_path):
    source = _tiny(name)
    path = tmp_path / "unknown.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = derain.load_checkpoint(path)
    assert type(loaded) is type(source)
    assert loaded.derain_card.name == name  # the card travels with the model
    _assert_same_weights(source, loaded)


def test_drsformer_without_mefc_is_detected_as_such(tmp_path):
    source = derain.create_model("drsformer", **{**derain.model_card("drsformer").tiny_config, "mefc": False})
    path = tmp_path / "rain200l.pth"
    torch.save({"params": source.state_dict()}, path)
    _assert_same_weights(source, derain.load_checkpoint(path))


def test_wrong_model_names_the_right_one(tmp_path):
    path = tmp_path / "drs.pth"
    torch.save({"params": _tiny("drsformer").state_dict()}, path)
    with pytest.raises(CheckpointError) as info:
        derain.load_checkpoint(path, model=_tiny("dmsr"))
    message = str(info.value)
    assert "drs.pth" in message
    assert "missing keys" in message and "unexpected keys" in message
    assert "looks like a 'drsformer' checkpoint" in message


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"params": {"x": torch.zeros(1)}, "payload": _Exploit(marker)}, f)
    with pytest.raises(CheckpointError, match="refused to load.*needs to run code"):
        derain.load_checkpoint(path, model="drsformer")
    assert not marker.exists()


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nothing.pth"):
        derain.load_checkpoint(tmp_path / "nothing.pth")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors file"):
        derain.load_checkpoint(junk)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="no state dict found.*epoch"):
        derain.load_checkpoint(empty)

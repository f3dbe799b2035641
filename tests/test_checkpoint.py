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


def _tiny_checkpoint(path, meta_override=None):
    """A tiny DRSformer saved by derain, its metadata replaced by ``meta_override`` if given."""
    config = dict(derain.model_card("drsformer").tiny_config)
    derain.save_weights(path, _tiny("drsformer"), "drsformer", config)
    if meta_override is not None:
        state_dict = derain.checkpoint.read_state_dict(path)[0]
        if path.suffix == ".safetensors":
            save_file(state_dict, str(path), metadata={f"derain.{k}": v for k, v in meta_override.items()})
        else:
            torch.save({"params": state_dict, "derain": meta_override}, path)
    return path


def test_a_configuration_asking_for_too_much_memory_is_refused_before_building(tmp_path, monkeypatch):
    config = {**derain.model_card("drsformer").tiny_config, "dim": 4096}
    path = _tiny_checkpoint(tmp_path / "huge.pth", {"model": "drsformer", "config": config})
    built, build = [], derain.checkpoint.build
    monkeypatch.setattr(derain.checkpoint, "build", lambda *a, **k: built.append(torch.get_default_device()) or build(*a, **k))
    with pytest.raises(CheckpointError, match=r"huge\.pth: derain\.config \(.*dim=4096.*\) asks for .* GiB .* over the limit"):
        derain.load_checkpoint(path)
    assert all(device.type == "meta" for device in built)
    small = _tiny_checkpoint(tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="over the limit"):
        derain.load_checkpoint(small, max_parameter_bytes=1000)
    assert derain.load_checkpoint(small) is not None


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("meta, message", [
    ({"model": "drsformer", "config": "{not json"}, r"field derain\.config is not valid JSON"),
    ({"model": "drsformer", "config": '{"dim": "eight"}'}, r"field derain\.config\.dim must be int, found 'eight'"),
    ({"model": "drsformer", "config": '{"colour": 3}'}, r"field derain\.config\.colour is not an argument of drsformer"),
    ({"model": "drsformer", "config": "[8, 8]"}, r"field derain\.config must be a mapping, found list"),
    ({"model": "resnet50"}, r"field derain\.model is 'resnet50', not a registered model"),
    ({"model": "dmsr", "config": '{"dim": 8}'}, r"field derain\.config\.dim is not an argument of dmsr"),
    ({"model": "drsformer", "config": '{"dim": 8, "heads": [3, 3, 3, 3]}'}, r"derain\.config does not build a drsformer \(ValueError"),
], ids=["json", "type", "unknown", "list", "name", "other_architecture", "unbuildable"])
def test_metadata_is_validated_naming_the_file_and_field(tmp_path, suffix, meta, message):
    if suffix == ".pth" and isinstance(meta.get("config"), str) and meta["config"] != "{not json":
        import json

        meta = {**meta, "config": json.loads(meta["config"])}
    path = _tiny_checkpoint(tmp_path / f"meta{suffix}", meta)
    with pytest.raises(CheckpointError, match=f"meta\\{suffix}: {message}"):
        derain.load_checkpoint(path)


@pytest.mark.parametrize("name", ["w.SAFETENSORS", "w.pth", "w"])
def test_safetensors_are_recognised_by_content(tmp_path, name):
    path = _tiny_checkpoint(tmp_path / "w.safetensors").rename(tmp_path / name)
    assert type(derain.load_checkpoint(path)).__name__ == "DRSformer"
    torch_file = _tiny_checkpoint(tmp_path / "t.pth").rename(tmp_path / f"t{name}.safetensors")
    assert type(derain.load_checkpoint(torch_file)).__name__ == "DRSformer"


@pytest.mark.parametrize("content, what", [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "the file is a PNG image"),
    (b"model: drsformer\nweights: later\n", "the file is text"),
    (bytes(range(7, 200)), "unrecognised content"),
], ids=["png", "text", "random"])
def test_files_that_are_not_checkpoints_are_named_for_what_they_are(tmp_path, content, what):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"weights.pth: not a readable checkpoint: {what}") as info:
        derain.load_checkpoint(path)
    assert "weights_only" not in str(info.value)


def test_refusing_a_pickle_never_suggests_the_unsafe_path(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"params": {"x": torch.zeros(1)}, "payload": _Exploit(tmp_path / "pwned")}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused to load") as info:
        derain.load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "Unsupported global" in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    state_dict = _tiny("drsformer").state_dict()
    key = next(k for k, v in state_dict.items() if v.is_floating_point())
    state_dict[key].view(-1)[3] = bad
    torch.save({"params": state_dict}, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match=f"nan.pth: {key} holds 1 NaN or infinite value"):
        derain.load_checkpoint(tmp_path / "nan.pth")


def test_a_bit_flipped_zip_member_name_is_damage(tmp_path):
    path = _tiny_checkpoint(tmp_path / "flip.pth")
    data = bytearray(path.read_bytes())
    name = data.rfind(b"data.pkl")  # in the zip's central directory
    data[name] = 0xFF  # no longer UTF-8
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flip\.pth: not a readable PyTorch checkpoint"):
        derain.load_checkpoint(path)


def test_empty_zero_sized_and_non_string_keyed_state_dicts(tmp_path):
    torch.save({"params": {3: torch.zeros(2)}}, tmp_path / "keys.pth")
    with pytest.raises(CheckpointError, match=r"keys\.pth: parameter names must be strings, found 3"):
        derain.load_checkpoint(tmp_path / "keys.pth")
    zero = {k: v[:0] if v.dim() else v for k, v in _tiny("drsformer").state_dict().items()}
    torch.save({"params": zero}, tmp_path / "zero.pth")
    with pytest.raises(CheckpointError, match=r"zero\.pth: "):
        derain.load_checkpoint(tmp_path / "zero.pth")
    torch.save({"params": {}}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match=r"empty\.pth: no state dict found"):
        derain.load_checkpoint(tmp_path / "empty.pth")

"""derain's architectures through spandrel: detection, descriptors, and outputs equal to derain's."""

from __future__ import annotations

import sys
import types

import pytest
import torch

import derain
from derain.inference import first_output, run_padded
from derain.pretrained import DEFAULT_TAG, PRETRAINED_DIR

NAMES = ["drsformer", "cpraformer", "dmsr", "ddsaformer"]


def _stub_torchvision() -> None:
    """spandrel imports torchvision for two architectures of its own (LaMa, RestoreFormer) that
    these tests never load; PyPI's Linux torchvision wheels need CUDA's torch, which a CPU-only
    environment lacks, so a stand-in with the imported names lets ``import spandrel`` succeed."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or present without the torch it was built for
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        functional = types.ModuleType("torchvision.transforms.functional")
        functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest")
        functional.rotate = functional.normalize = None
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional
        root = types.ModuleType("torchvision")
        root.transforms = transforms
        sys.modules.update(
            {"torchvision": root, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}
        )


_stub_torchvision()
spandrel = pytest.importorskip("spandrel")
bridge = pytest.importorskip("derain.spandrel")


@pytest.fixture(scope="module")
def loader():
    """A loader whose registry is a copy of spandrel's main one with derain's architectures added."""
    registry = spandrel.MAIN_REGISTRY.copy()
    bridge.install(registry)
    return spandrel.ModelLoader(registry=registry)


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(3)
    return derain.create_model(name, **derain.model_card(name).tiny_config).eval()


def _assert_same_output(descriptor, model: torch.nn.Module) -> None:
    card = derain.model_card(derain.registry.card_of(model).name)
    side = max(card.min_size, 64)
    generator = torch.Generator().manual_seed(0)
    for height, width in [(side, side), (side + 5, side + card.size_multiple + 3)]:
        rainy = torch.rand(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = run_padded(model, rainy, card.size_multiple, min_size=card.min_size).clamp(0, 1)
        assert torch.allclose(descriptor(rainy), expected, atol=1e-6), (card.name, height, width)


def _official(state_dict):
    return {"params": state_dict}  # BasicSR (DRSformer); CPRAformer/DMSR's "state_dict" is covered below


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["official_params", "official_state_dict_ddp", "derain_pth", "derain_safetensors"])
def test_checkpoints_load_through_spandrel_and_match_derain(name, layout, loader, tmp_path):
    model = _tiny(name)
    config = dict(derain.model_card(name).tiny_config)
    state_dict = model.state_dict()
    if layout == "official_params":
        path = tmp_path / "Rain200H.pth"
        torch.save({"params": state_dict}, path)
    elif layout == "official_state_dict_ddp":
        path = tmp_path / "model_best.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": 3}, path)
    else:
        path = derain.save_weights(tmp_path / f"w.{layout.split('_')[1]}", model, name, config)
    descriptor = loader.load_from_file(path)
    assert isinstance(descriptor, spandrel.ImageModelDescriptor)
    assert descriptor.architecture.id == type(model).__name__
    card = derain.model_card(name)
    assert descriptor.purpose == "Restoration" and descriptor.scale == 1
    assert (descriptor.input_channels, descriptor.output_channels) == (3, 3)
    assert descriptor.size_requirements.multiple_of == card.size_multiple
    assert descriptor.size_requirements.minimum >= card.min_size
    assert descriptor.supports_half == card.half_precision
    expected_tiling = spandrel.ModelTiling.DISCOURAGED if card.tiling.name == "DISCOURAGED" else spandrel.ModelTiling.SUPPORTED
    assert descriptor.tiling == expected_tiling
    _assert_same_output(descriptor, model)


def test_drsformer_without_mefc_is_recognised(loader, tmp_path):
    model = derain.create_model("drsformer", **{**derain.model_card("drsformer").tiny_config, "mefc": False}).eval()
    torch.save({"params": model.state_dict()}, tmp_path / "Rain200L.pth")
    _assert_same_output(loader.load_from_file(tmp_path / "Rain200L.pth"), model)


def test_shipped_weights_load_through_spandrel(loader):
    path = PRETRAINED_DIR / f"{DEFAULT_TAG}.safetensors"
    descriptor = loader.load_from_file(path)
    model = derain.create_model(descriptor.architecture.id.lower(), pretrained=DEFAULT_TAG)
    generator = torch.Generator().manual_seed(1)
    rainy = torch.rand(1, 3, 40, 48, generator=generator)
    with torch.no_grad():
        expected = first_output(model(rainy)).clamp(0, 1)
    assert torch.allclose(descriptor(rainy), expected, atol=1e-6)


def test_other_models_are_left_to_spandrel():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 3, 3))
    assert bridge.match(conv.state_dict()) is None
    drsformer = _tiny("drsformer").state_dict()
    del drsformer[next(iter(drsformer))]
    assert bridge.match(drsformer) is None  # one name short: not a DRSformer spandrel could load


def test_install_adds_the_architectures_once():
    registry = spandrel.MAIN_REGISTRY.copy()
    added = bridge.install(registry)
    assert {support.architecture.id for support in added} == {"DRSformer", "CPRAformer", "DMSR", "DDSAformer"}
    assert bridge.install(registry) == []
    assert len(registry) == len(spandrel.MAIN_REGISTRY) + len(added)


@pytest.mark.parametrize("name", NAMES)
def test_spandrel_own_architectures_claim_no_derain_state_dict(name):
    """Why derain's entries may come last: no detector of spandrel's takes a derain file."""
    with torch.device("meta"):
        state_dict = derain.create_model(name, **derain.model_card(name).default_config).state_dict()
    assert [s.architecture.id for s in spandrel.MAIN_REGISTRY.architectures() if s.detect(state_dict)] == []

"""DMSR-specific behaviour: output pyramid, size rules, Fourier-unit layout, config recovery."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

import derain
from conftest import GOLDEN, synth_state_dict
from derain.models.dmsr import DMSR, SCM, FourierUnit, PixelAttention

TINY = derain.model_card("dmsr").tiny_config


def _tiny(**overrides) -> DMSR:
    torch.manual_seed(0)
    return derain.create_model("dmsr", **{**TINY, **overrides}).double().eval()


def test_outputs_are_full_half_and_quarter_resolution():
    with torch.no_grad():
        outputs = _tiny()(torch.rand(2, 3, 64, 96, dtype=torch.float64))
    assert isinstance(outputs, tuple)
    assert [o.shape for o in outputs] == [(2, 3, 64, 96), (2, 3, 32, 48), (2, 3, 16, 24)]
    assert all(o.is_contiguous() for o in outputs)


def test_coarse_inputs_are_every_second_pixel():
    """With the output convs zeroed, each output is its input: x, x[::2, ::2], x[::4, ::4]."""
    model = _tiny()
    for conv in (model.feat_extract[5], model.ConvsOut[0], model.ConvsOut[1]):
        torch.nn.init.zeros_(conv.main[0].weight)
        torch.nn.init.zeros_(conv.main[0].bias)
    x = torch.rand(1, 3, 64, 80, dtype=torch.float64)
    with torch.no_grad():
        full, half, quarter = model(x)
    assert torch.equal(full, x)
    assert torch.equal(half, x[..., ::2, ::2])
    assert torch.equal(quarter, x[..., ::4, ::4])


@pytest.mark.parametrize(
    "shape, need",
    [((1, 3, 48, 64), "multiples of 16 and at least 64"), ((1, 3, 64, 72), "multiples of 16")],
)
def test_sizes_below_64_or_off_multiple_are_refused(shape, need):
    with pytest.raises(ValueError, match=rf"{need}.*{re.escape(str(shape))}"):
        _tiny()(torch.rand(*shape, dtype=torch.float64))


def test_num_res_1_is_one_dual_domain_block_per_level():
    model = _tiny(num_res=1)
    assert [type(block).__name__ for block in model.Encoder[0].layers] == ["DualDomainResBlock"]
    with torch.no_grad():
        outputs = model(torch.rand(1, 3, 64, 64, dtype=torch.float64))
    assert all(torch.isfinite(o).all() for o in outputs)


def _with_random_batch_norm(unit: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    for p in unit.parameters():
        torch.nn.init.normal_(p)
    unit.bn.running_mean.normal_()
    unit.bn.running_var.uniform_(0.5, 1.5)
    return unit.double().eval()


def test_fourier_unit_interleaves_real_and_imaginary_parts_per_channel():
    """Reference: the 1×1 conv sees (Re₀, Im₀, Re₁, Im₁, …) of rfft2(x, 'ortho')."""
    c, h, w = 3, 8, 10
    unit = _with_random_batch_norm(FourierUnit(c))
    x = torch.rand(2, c, h, w, dtype=torch.float64)

    def reference(interleaved: bool) -> torch.Tensor:
        spectrum = torch.fft.rfft2(x, norm="ortho")
        parts = (spectrum.real, spectrum.imag)
        if interleaved:
            z = torch.stack(parts, dim=2).flatten(1, 2)
        else:
            z = torch.cat(parts, dim=1)
        z = F.relu(unit.bn(F.conv2d(z, unit.conv_layer.weight)))
        re, im = (z[:, 0::2], z[:, 1::2]) if interleaved else z.chunk(2, dim=1)
        return torch.fft.irfft2(torch.complex(re, im), s=(h, w), norm="ortho")

    with torch.no_grad():
        out = unit(x)
        torch.testing.assert_close(out, reference(interleaved=True), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(out, reference(interleaved=False), rtol=1e-3, atol=1e-3)


def test_pixel_attention_is_the_official_grouped_conv_on_interleaved_channels():
    c = 4
    attention = PixelAttention(c).double()
    x, guide = torch.rand(2, 2, c, 9, 11, dtype=torch.float64).unbind(0)
    pairs = torch.stack([x, guide], dim=2).flatten(1, 2)  # (x₀, g₀, x₁, g₁, …)
    padded = F.pad(pairs, (3, 3, 3, 3), mode="reflect")
    reference = torch.sigmoid(F.conv2d(padded, attention.pa2.weight, attention.pa2.bias, groups=c))
    with torch.no_grad():
        torch.testing.assert_close(attention(x, guide), reference, rtol=1e-12, atol=1e-12)


def test_scm_skips_only_a_bias_that_instance_norm_cancels():
    """The official SCM (its Sequential run as is, bias included) gives the same features."""
    torch.manual_seed(2)
    scm = SCM(16).double()
    torch.nn.init.normal_(scm.main[3].main[0].bias, std=10.0)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(scm(x), scm.main(x), rtol=1e-10, atol=1e-10)


def test_float32_matches_official_on_the_small_fixture():
    """The default fixture overflows float32; the num_res=2 one (max ~3e14) does not."""
    fx = torch.load(GOLDEN / "dmsr" / "small_seed1_64x64.pt", weights_only=True)
    model = derain.create_model("dmsr", **fx["config"]).double()
    model.load_state_dict(synth_state_dict(fx["manifest"], fx["seed"]), strict=True)
    with torch.no_grad():
        outputs = model.float().eval()(fx["input"].float())
    for out, ref in zip(outputs, fx["outputs"]):
        rel = torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)
        assert rel.item() <= 1e-4


def test_config_is_read_from_the_official_layout():
    manifest = json.loads((GOLDEN / "dmsr" / "manifest_default.json").read_text())
    state_dict = {k: torch.empty(shape, device="meta") for k, shape, _ in manifest["state_dict"]}
    assert DMSR.config_from_state_dict(state_dict) == {"num_res": 16, "base_channel": 48}


def test_config_from_a_foreign_state_dict_is_a_key_error():
    with pytest.raises(KeyError, match="feat_extract.0.main.0.weight"):
        DMSR.config_from_state_dict({"patch_embed.proj.weight": torch.empty(48, 3, 3, 3)})


@pytest.mark.parametrize(
    "kwargs, message", [({"num_res": 0}, "num_res.*0"), ({"base_channel": 47}, "base_channel.*47")]
)
def test_bad_constructor_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DMSR(**kwargs)

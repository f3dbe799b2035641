"""DDSAformer-specific behaviour: the paper's ablation switches, the sparse top-k, SEFN."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import derain
from derain.models.ddsaformer import (
    DDSAformer,
    DynamicDualAttention,
    SpatialEnhancedFFN,
    sefn_hidden_width,
    top_k_count,
)
from derain.models.layers import masked_top_k_softmax
from derain.models.reference import ddsaformer_attention

TINY = dict(derain.model_card("ddsaformer").tiny_config)


def _build(**overrides) -> DDSAformer:
    torch.manual_seed(0)
    return derain.create_model("ddsaformer", **{**TINY, **overrides}).double().eval()


def _shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in model.state_dict().items()}


def _run(model: DDSAformer, seed: int = 1) -> torch.Tensor:
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        return model(x)


def test_top_k_softmax_keeps_exactly_k_entries_per_row():
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 4.0, -1.0]], dtype=torch.float64)
    probs = masked_top_k_softmax(scores, 2, float("-inf"))
    assert ((probs > 0).sum(dim=-1) == 2).all()
    assert torch.equal(probs > 0, torch.tensor([[True, False, True, False], [False, True, True, False]]))
    e = math.exp(1.0)
    expected = torch.tensor([e / (e + 1), 1 / (e + 1)], dtype=torch.float64)
    torch.testing.assert_close(probs[0, [0, 2]], expected)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2, dtype=torch.float64))


def test_top_k_softmax_zero_mask_is_softmax_with_dropped_scores_set_to_zero():
    scores = torch.tensor([[3.0, 1.0, 2.0, -2.0]], dtype=torch.float64)
    probs = masked_top_k_softmax(scores, 2, 0.0)
    expected = torch.tensor([[3.0, 0.0, 2.0, 0.0]], dtype=torch.float64).softmax(dim=-1)
    torch.testing.assert_close(probs, expected)


@pytest.mark.parametrize(
    ("ratio", "channels", "k"), [(0.7, 48, 33), (0.7, 96, 67), (0.7, 1, 1), (0.1, 4, 1), (1.0, 8, 8)]
)
def test_top_k_count_is_int_of_ratio_times_channels_and_at_least_one(ratio, channels, k):
    assert top_k_count(ratio, channels) == k


def test_one_channel_per_head_gives_finite_output():
    model = _build(dim=4, heads=[4, 8, 16, 32], refinement_heads=8, attention="sparse")
    assert model.encoder_level1[0].attn.top_k == 1
    assert torch.isfinite(_run(model)).all()


@pytest.mark.parametrize("mode", ["dual", "dense", "sparse"])
@pytest.mark.parametrize("mask_value", ["-inf", "zero"])
def test_attention_computes_the_papers_formula(mode, mask_value):
    torch.manual_seed(0)
    attn = DynamicDualAttention(12, 2, bias=True, attention=mode, mask_value=mask_value).double()
    with torch.no_grad():  # make the two scalars and temperatures distinct
        attn.temperature.copy_(torch.tensor([[[2.0]], [[0.5]]]))
        for weight in (attn.dense_weight, attn.sparse_weight):
            if weight is not None:
                weight.uniform_(0.2, 1.5)
    x = torch.randn(2, 12, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), ddsaformer_attention(attn, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        (
            {},
            ["attn.dense_weight", "attn.sparse_weight", "ffn.dwconvs.1.weight", "ffn.spatial_conv.weight"],
            ["ffn.dwconv.weight"],
        ),
        ({"attention": "dense"}, ["attn.dense_weight"], ["attn.sparse_weight"]),
        ({"attention": "sparse"}, ["attn.sparse_weight"], ["attn.dense_weight"]),
        ({"spatial_attention": False}, ["ffn.dwconvs.1.weight"], ["ffn.spatial_conv.weight"]),
        ({"ffn": "gdfn"}, ["ffn.dwconv.weight"], ["ffn.dwconvs.0.weight", "ffn.spatial_conv.weight"]),
        ({"sefn_scale": 4}, ["ffn.dwconvs.2.weight"], ["ffn.dwconvs.3.weight"]),
    ],
)
def test_ablation_switches_build_run_and_set_the_parameters(overrides, present, absent):
    model = _build(**overrides)
    keys = set(model.state_dict())
    for block in ("encoder_level1.0.", "latent.0.", "refinement.0."):
        assert {block + k for k in present} <= keys
        assert not {block + k for k in absent} & keys
    assert torch.isfinite(_run(model)).all()
    config = DDSAformer.config_from_state_dict(model.state_dict())
    assert {k: config[k] for k in overrides} == overrides


def test_mask_value_changes_the_output_only_when_scores_are_dropped():
    assert not torch.allclose(_run(_build(mask_value="zero")), _run(_build(mask_value="-inf")))
    # keeping every score leaves nothing to mask
    keep_all_zero = _run(_build(mask_value="zero", topk_ratio=1.0))
    keep_all_inf = _run(_build(mask_value="-inf", topk_ratio=1.0))
    assert torch.equal(keep_all_zero, keep_all_inf)


@pytest.mark.parametrize(("dim", "width"), [(48, 126), (96, 255), (192, 510), (384, 1020), (8, 21)])
def test_sefn_hidden_width_is_scale_times_int_of_dim_factor_over_scale(dim, width):
    assert sefn_hidden_width(dim, 2.66, 3) == width
    ffn = SpatialEnhancedFFN(dim, 2.66, bias=False)
    assert ffn.project_in.out_channels == width
    assert [conv.in_channels for conv in ffn.dwconvs] == [width // 3] * 2


def test_sefn_computes_the_res2net_hierarchy_and_spatial_gate():
    torch.manual_seed(0)
    ffn = SpatialEnhancedFFN(8, 2.0, bias=True, scale=4).double()
    x = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    xs = ffn.project_in(x).chunk(4, dim=1)
    y2 = ffn.dwconvs[0](xs[1])
    y3 = ffn.dwconvs[1](xs[2] + y2)
    y4 = ffn.dwconvs[2](xs[3] + y3)
    features = F.gelu(torch.cat([xs[0], y2, y3, y4], dim=1))
    pooled = torch.stack([features.mean(dim=1), features.max(dim=1).values], dim=1)
    expected = ffn.project_out(features * torch.sigmoid(ffn.spatial_conv(pooled)))
    with torch.no_grad():
        torch.testing.assert_close(ffn(x), expected.detach(), rtol=1e-12, atol=1e-12)


def test_default_layout_follows_the_paper():
    model = derain.create_model("ddsaformer")
    sd = model.state_dict()
    assert sd["refinement.1.attn.temperature"].shape == (1, 1, 1)
    assert sd["refinement.0.norm1.body.weight"].shape == (96,)
    assert "refinement.2.norm1.body.weight" not in sd
    assert sd["latent.7.attn.temperature"].shape == (8, 1, 1)
    assert sd["encoder_level1.0.ffn.project_in.weight"].shape == (126, 48, 1, 1)
    assert model.encoder_level1[0].attn.top_k == 33
    assert model.decoder_level1[0].attn.top_k == 67


def test_config_is_read_back_for_non_default_switches():
    config = dict(
        TINY, bias=True, LayerNorm_type="BiasFree", ffn_expansion_factor=2.0, sefn_scale=4,
        spatial_attention=False, attention="sparse", num_refinement_blocks=0,
    )
    model = derain.create_model("ddsaformer", **config)
    read = DDSAformer.config_from_state_dict(model.state_dict())
    rebuilt = derain.create_model("ddsaformer", **read)
    assert _shapes(rebuilt) == _shapes(model)
    assert read["bias"] and read["LayerNorm_type"] == "BiasFree" and read["sefn_scale"] == 4


def test_gdfn_config_is_read_back():
    model = derain.create_model("ddsaformer", **TINY, ffn="gdfn", ffn_expansion_factor=3.0)
    read = DDSAformer.config_from_state_dict(model.state_dict())
    rebuilt = derain.create_model("ddsaformer", **read)
    assert _shapes(rebuilt) == _shapes(model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attention": "both"}, "attention must be one of.*'both'"),
        ({"mask_value": "nan"}, "mask_value must be one of.*'nan'"),
        ({"ffn": "msfn"}, "ffn must be one of.*'msfn'"),
        ({"sefn_scale": 1}, "sefn_scale must be at least 2, got 1"),
        ({"heads": [3, 2, 2, 4]}, "8 channels cannot be split into 3 heads"),
    ],
)
def test_bad_switches_name_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        derain.create_model("ddsaformer", **{**TINY, **overrides})

"""DRSformer-specific behaviour: the MEFC switch, the one-top-k sparse attention, config recovery."""

from __future__ import annotations

import json

import pytest
import torch

import derain
from conftest import GOLDEN
from derain.models.drsformer import DRSformer, TopKSparseAttention
from derain.models.reference import drsformer_sparse_attention

MANIFESTS = {mefc: GOLDEN / "drsformer" / name for mefc, name in
             ((True, "manifest_default.json"), (False, "manifest_nomefc_default.json"))}


def _manifest(mefc: bool) -> dict:
    return json.loads(MANIFESTS[mefc].read_text())


def _meta_state_dict(manifest: dict) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape, _ in manifest["state_dict"]}


def test_mefc_flag_removes_exactly_the_two_compensators():
    with torch.device("meta"):
        with_mefc = derain.create_model("drsformer").state_dict()
        without = derain.create_model("drsformer", mefc=False).state_dict()
    assert list(without) == [key for key, _, _ in _manifest(False)["state_dict"]]
    extra = set(with_mefc) - set(without)
    assert set(without) < set(with_mefc)
    assert {key.split(".")[0] for key in extra} == {"encoder_level0", "refinement"}
    assert len(extra) == len(_manifest(True)["state_dict"]) - len(_manifest(False)["state_dict"])


@pytest.mark.parametrize("channels, heads", [(48, 1), (96, 1), (16, 2), (4, 2)])
def test_one_topk_attention_equals_four_softmaxes(channels, heads):
    attention = TopKSparseAttention(channels, heads, bias=False).double()
    scalars = torch.tensor([0.7, -0.3, 1.1, 0.25], dtype=torch.float64)
    for parameter, value in zip((attention.attn1, attention.attn2, attention.attn3, attention.attn4), scalars):
        parameter.data.fill_(value)
    g = torch.Generator().manual_seed(channels)
    scores = (torch.randn(2, heads, channels // heads, channels // heads, generator=g, dtype=torch.float64) * 3)
    scores.requires_grad_(True)
    ours = attention.sparse_attention(scores)
    reference = drsformer_sparse_attention(scores, attention.top_k, scalars)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    weight = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad((ours * weight).sum(), scores)
    (grad_ref,) = torch.autograd.grad((reference * weight).sum(), scores)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-10, atol=1e-12)


def test_top_k_counts_follow_the_official_rounding():
    assert TopKSparseAttention(48, 1, bias=False).top_k == (24, 32, 36, 38)
    assert TopKSparseAttention(96, 1, bias=False).top_k == (48, 64, 72, 76)
    assert TopKSparseAttention(2, 1, bias=False).top_k == (1, 1, 1, 1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"dim": 4, "heads": [4, 2, 2, 2]}, r"4 channels with 4 heads leave 1 channel per head"),
        ({"dim": 8, "heads": [1, 2, 4, 64]}, r"64 channels with 64 heads leave 1 channel per head"),
        ({"dim": 8, "heads": [3, 1, 1, 1]}, r"channels \(8\) must be divisible by the head count \(3\)"),
    ],
)
def test_heads_that_would_give_nan_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        derain.create_model("drsformer", **overrides)


@pytest.mark.parametrize("mefc", [True, False])
def test_config_is_read_from_official_layout(mefc):
    manifest = _manifest(mefc)
    assert DRSformer.config_from_state_dict(_meta_state_dict(manifest)) == manifest["config"]


def test_config_recovers_other_expansion_factor_bias_and_norm():
    config = {"dim": 8, "num_blocks": [1, 2, 1, 1], "heads": [1, 2, 2, 4],
              "ffn_expansion_factor": 2.0, "bias": True, "LayerNorm_type": "BiasFree", "mefc": False}
    with torch.device("meta"):
        model = derain.create_model("drsformer", **config)
    recovered = DRSformer.config_from_state_dict(model.state_dict())
    assert recovered == {"inp_channels": 3, "out_channels": 3, **config}


def test_config_refuses_inconsistent_feed_forward_widths():
    with torch.device("meta"):
        state_dict = derain.create_model("drsformer", dim=8, num_blocks=[1, 1, 1, 1]).state_dict()
    state_dict["latent.0.ffn.dwconv3x3_1.weight"] = torch.empty(7, 2, 3, 3, device="meta")
    with pytest.raises(ValueError, match="ffn_expansion_factor"):
        DRSformer.config_from_state_dict(state_dict)


def test_float32_output_is_contiguous_nchw():
    model = derain.create_model("drsformer", **derain.model_card("drsformer").tiny_config).eval()
    with torch.no_grad():
        restored = model(torch.rand(1, 3, 16, 16))
    assert restored.is_contiguous()


@pytest.mark.parametrize("first, second", [(5, 5), (6, 4), (3, 7)])
def test_pair_sums_equal_the_sums_of_the_concatenation(first, second):
    from derain.models.drsformer import _pair_sums

    a, b = torch.randn(2, first, 5, 6), torch.randn(2, second, 5, 6)
    whole = torch.cat([a, b], dim=1)
    torch.testing.assert_close(_pair_sums(a, b), whole[:, 0::2] + whole[:, 1::2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="even number of channels"):
        _pair_sums(a, b[:, :1] if second % 2 == 0 else b[:, :2])


@pytest.mark.parametrize("dim, factor, bias", [(8, 2.66, False), (12, 2.66, True), (8, 2.0, False)])
def test_feed_forward_equals_the_official_form_with_and_without_autograd(dim, factor, bias):
    """Hidden widths 21 and 31 (a channel pair straddles the 3x3 and 5x5 parts) and 16."""
    from derain.models.drsformer import MixedScaleFeedForward

    torch.manual_seed(0)
    ffn = MixedScaleFeedForward(dim, factor, bias)
    x = torch.randn(1, dim, 9, 10)

    def official(x):  # the official FeedForward: exchanged halves, grouped convs of two channels
        x = ffn.project_in(x)
        x1_3, x2_3 = torch.relu(ffn.dwconv3x3(x)).chunk(2, dim=1)
        x1_5, x2_5 = torch.relu(ffn.dwconv5x5(x)).chunk(2, dim=1)
        x1 = torch.relu(ffn.dwconv3x3_1(torch.cat([x1_3, x1_5], dim=1)))
        x2 = torch.relu(ffn.dwconv5x5_1(torch.cat([x2_3, x2_5], dim=1)))
        return ffn.project_out(torch.cat([x1, x2], dim=1))

    expected = official(x)
    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-6)
    ffn(x).sum().backward()  # training takes the autograd path
    assert all(p.grad is not None for p in ffn.parameters())
    with torch.inference_mode():
        torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-6)


def test_expert_step_writes_the_same_concatenation_without_autograd():
    from derain.models.drsformer import MixtureOfExpertsCompensator

    torch.manual_seed(0)
    mefc = MixtureOfExpertsCompensator(8)
    x = torch.randn(2, 8, 12, 10).contiguous(memory_format=torch.channels_last)
    trained = mefc(x)  # autograd on: the concatenation of the scaled experts
    with torch.inference_mode():
        inferred = mefc(x)  # each expert scaled into its slice of one buffer
    torch.testing.assert_close(inferred, trained.detach(), rtol=0, atol=0)

"""CPRAformer specifics: the batch-shared top-k count, the per-image mode, the k >= 1 guard,
and the rewritten attention (one product, FFT stage in closed form) against the official formula."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import torch

import derain
from conftest import GOLDEN, synth_state_dict
from derain.models.cpraformer import (
    CPRAformer,
    CrossParadigmAttention,
    FourierAffine,
)
from derain.models.layers import top_k_softmax
from derain.models.reference import cpraformer_attention, cpraformer_fourier_stage

SMALL = GOLDEN / "cpraformer" / "small_seed1_32x32.pt"


def _small_model(**overrides) -> tuple[dict, CPRAformer]:
    fx = torch.load(SMALL, weights_only=True)
    model = derain.create_model("cpraformer", **fx["config"], **overrides).double()
    model.load_state_dict(synth_state_dict(fx["manifest"], fx["seed"]), strict=True)
    return fx, model.eval()


def _record_counts():
    """Patch ``top_k_count`` to record what every attention layer returns, in call order."""
    counts = []
    original = CrossParadigmAttention.top_k_count

    def recording(self, x, channels):
        k = original(self, x, channels)
        counts.append(k.tolist() if isinstance(k, torch.Tensor) else k)
        return k

    return counts, mock.patch.object(CrossParadigmAttention, "top_k_count", recording)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def test_default_matches_fixture_and_couples_the_batch():
    fx, model = _small_model()
    alone = fx["input"]
    # With these weights, pairing the input with its negative moves the batch-mean gate of
    # the fourth attention across an integer (3.99 → 4.xx).
    other = -alone
    counts_alone, patch = _record_counts()
    with torch.no_grad(), patch:
        out_alone = model(alone)
    torch.testing.assert_close(out_alone, fx["outputs"][0], rtol=0, atol=1e-8 * 96)
    counts_pair, patch = _record_counts()
    with torch.no_grad(), patch:
        out_pair = model(torch.cat([alone, other]))
    assert counts_pair != counts_alone  # one count per layer, shared by both images
    assert all(isinstance(k, int) for k in counts_pair)
    assert (out_pair[:1] - out_alone).abs().max() > 1e-3  # image 0 depends on image 1


def test_per_image_mode_equals_running_each_image_alone():
    fx, model = _small_model(batch_independent=True)
    g = torch.Generator().manual_seed(5)
    noise = torch.rand(fx["input"].shape, generator=g, dtype=torch.float64)
    batch = torch.cat([fx["input"], -fx["input"], noise])
    counts, patch = _record_counts()
    with torch.no_grad(), patch:
        batched = model(batch)
    assert any(len(set(k)) > 1 for k in counts)  # the images really get different counts
    with torch.no_grad():
        for i in range(len(batch)):
            alone = model(batch[i : i + 1])
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-10, atol=1e-10)
    # One image alone gets the same count in both modes: the official result.
    torch.testing.assert_close(batched[:1], fx["outputs"][0], rtol=0, atol=1e-8 * 96)


@pytest.mark.parametrize("batch_independent", [False, True])
def test_gate_near_zero_keeps_one_score_and_stays_finite(batch_independent):
    fx, model = _small_model(batch_independent=batch_independent)
    attentions = [m for m in model.modules() if isinstance(m, CrossParadigmAttention)]
    with torch.no_grad():
        for attn in attentions:
            attn.gate[2].bias.fill_(-60.0)  # sigmoid ≈ 1e-26: the official k = int(C·mean) is 0
    counts, patch = _record_counts()
    with torch.no_grad(), patch:
        out = model(torch.cat([fx["input"], fx["input"].flip(-1)]))
    expected = [1, 1] if batch_independent else 1
    assert counts == [expected] * len(attentions)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("batch", [1, 3])
def test_attention_equals_official_formula(batch):
    torch.manual_seed(0)
    attn = CrossParadigmAttention(dim=32, num_heads=2, bias=True).double().eval()
    _randomize(attn, seed=1)
    with torch.no_grad():
        attn.gate[2].bias.fill_(0.0)  # keep k well inside (0, C)
        x = torch.randn(batch, 32, 6, 10, dtype=torch.float64)
        torch.testing.assert_close(attn(x), cpraformer_attention(attn, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (8, 6)])
def test_fourier_affine_equals_fft_round_trip(size):
    fft = FourierAffine(6).double()
    _randomize(fft, seed=2)
    z = torch.randn(2, 6, *size, dtype=torch.float64, requires_grad=True)
    ours, official = fft(z), cpraformer_fourier_stage(fft, z)
    torch.testing.assert_close(ours, official, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), z)
    (g_official,) = torch.autograd.grad(official.square().sum(), z)
    torch.testing.assert_close(g_ours, g_official, rtol=1e-12, atol=1e-12)


def test_top_k_softmax_per_row_and_per_image_counts():
    scores = torch.randn(3, 2, 5, 5, dtype=torch.float64)

    def masked(s, k):
        keep = torch.zeros_like(s).scatter_(-1, s.topk(k, dim=-1)[1], 1.0) > 0
        return s.masked_fill(~keep, float("-inf")).softmax(dim=-1)

    torch.testing.assert_close(top_k_softmax(scores, 2), masked(scores, 2))
    per_image = top_k_softmax(scores, torch.tensor([1, 5, 3]))
    for i, k in enumerate([1, 5, 3]):
        torch.testing.assert_close(per_image[i], masked(scores[i], k))


def test_config_is_read_from_the_official_default_layout():
    manifest = json.loads((GOLDEN / "cpraformer" / "manifest_default.json").read_text())
    state_dict = {k: torch.empty(shape) for k, shape, _ in manifest["state_dict"]}
    config = CPRAformer.config_from_state_dict(state_dict)
    assert config == {**manifest["config"], "num_blocks": [4, 6, 6, 8], "heads": [1, 2, 4, 8]}


def test_config_reads_bias_norm_and_expansion_variants():
    kwargs = dict(
        dim=16,
        num_blocks=[1, 2, 1, 1],
        num_refinement_blocks=2,
        heads=[2, 2, 4, 4],
        ffn_expansion_factor=3.0,
        bias=True,
        LayerNorm_type="BiasFree",
    )
    state_dict = CPRAformer(**kwargs).state_dict()
    config = CPRAformer.config_from_state_dict(state_dict)
    shapes = {k: v.shape for k, v in CPRAformer(**config).state_dict().items()}
    assert shapes == {k: v.shape for k, v in state_dict.items()}
    exact = ("num_blocks", "num_refinement_blocks", "heads", "bias", "LayerNorm_type")
    assert {k: config[k] for k in exact} == {k: kwargs[k] for k in exact}
    with pytest.raises(KeyError, match="patch_embed.proj.weight"):
        without_embed = {k: v for k, v in state_dict.items() if not k.startswith("patch_embed")}
        CPRAformer.config_from_state_dict(without_embed)


def test_width_that_cannot_split_into_heads_is_refused():
    with pytest.raises(ValueError, match="width 48 with 5 heads"):
        CPRAformer(dim=48, heads=[5, 2, 4, 8])
    with pytest.raises(ValueError, match="width 8 "):
        CPRAformer(dim=8)

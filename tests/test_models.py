"""Behaviour every registered architecture must have, checked on its tiny configuration."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import derain
from conftest import as_list

MODELS = derain.list_models()


def _tiny(name: str, dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return derain.create_model(name, **derain.model_card(name).tiny_config).to(dtype)


def _sizes(card) -> list[tuple[int, int]]:
    m, lo = card.size_multiple, max(card.min_size, card.size_multiple)
    return [(lo, lo), (lo + m, lo + 2 * m)]


def _is_unused(card, key: str) -> bool:
    return any(re.search(pattern, key) for pattern in card.unused_parameters)


def test_registry_lists_the_four_models():
    assert MODELS == ["cpraformer", "ddsaformer", "dmsr", "drsformer"]


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: cpraformer, ddsaformer, dmsr, drsformer"):
        derain.create_model("restormer")


@pytest.mark.parametrize("name", MODELS)
def test_card_counts_parameters_of_default_model(name):
    card = derain.model_card(name)
    model = derain.create_model(name, **card.default_config)
    assert card.num_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 2])
def test_forward_shapes_on_valid_sizes(name, batch):
    card = derain.model_card(name)
    model = _tiny(name).eval()
    for h, w in _sizes(card):
        with torch.no_grad():
            outputs = as_list(model(torch.rand(batch, 3, h, w, dtype=torch.float64)))
        assert len(outputs) == card.num_outputs
        for scale, out in enumerate(outputs):
            assert out.shape == (batch, 3, h >> scale, w >> scale)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_used_parameter(name):
    card = derain.model_card(name)
    model = _tiny(name).train()
    h, w = _sizes(card)[0]
    loss = sum(out.mean() for out in as_list(model(torch.rand(2, 3, h, w, dtype=torch.float64))))
    loss.backward()
    # A gradient below 1e-12 of the largest one is float64 rounding of an exact zero (e.g. a
    # conv bias right before a training-mode BatchNorm): that parameter is not reached.
    grads = {k: 0.0 if p.grad is None else p.grad.abs().max().item() for k, p in model.named_parameters()}
    unreached = [k for k, g in grads.items() if not g > 1e-12 * max(grads.values())]
    assert [k for k in unreached if not _is_unused(card, k)] == []
    for pattern in card.unused_parameters:  # the card documents real dead parameters only
        assert any(re.search(pattern, k) for k in unreached), pattern


@pytest.mark.parametrize("name", MODELS)
def test_outputs_are_contiguous_nchw(name):
    """Whatever layout the blocks compute in, callers get the usual NCHW tensors."""
    card = derain.model_card(name)
    model = derain.create_model(name, **card.tiny_config).eval()
    with torch.no_grad():
        outputs = model(torch.rand(1, 3, 64, 64))
    for output in [outputs] if isinstance(outputs, torch.Tensor) else outputs:
        assert output.is_contiguous()


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic(name):
    card = derain.model_card(name)
    model = _tiny(name).eval()
    x = torch.rand(1, 3, *_sizes(card)[1], dtype=torch.float64)
    with torch.no_grad():
        first, second = as_list(model(x)), as_list(model(x))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("name", [n for n in MODELS if derain.model_card(n).batch_independent])
def test_batch_items_are_independent(name):
    card = derain.model_card(name)
    model = _tiny(name).eval()
    x = torch.rand(3, 3, *_sizes(card)[0], dtype=torch.float64)
    with torch.no_grad():
        batched = as_list(model(x))
        single = as_list(model(x[1:2]))
    for b, s in zip(batched, single):
        torch.testing.assert_close(b[1:2], s, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_round_trip(name, suffix, tmp_path):
    card = derain.model_card(name)
    model = _tiny(name, torch.float32).eval()
    path = derain.save_weights(tmp_path / f"w{suffix}", model, name, card.tiny_config)
    loaded = derain.load_checkpoint(path)
    assert type(loaded) is type(model)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_config_is_read_back_from_parameter_shapes(name):
    model = _tiny(name, torch.float32)
    config = type(model).config_from_state_dict(model.state_dict())
    rebuilt = derain.create_model(name, **config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_name_the_shape(name):
    card = derain.model_card(name)
    model = _tiny(name, torch.float32).eval()
    h, w = _sizes(card)[0]
    with pytest.raises(ValueError, match=r"4-D.*\(3, %d, %d\)" % (h, w)):
        model(torch.rand(3, h, w))
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, %d, %d\)" % (h, w)):
        model(torch.rand(1, 4, h, w))
    with pytest.raises(ValueError, match=r"multiples of %d.*\(1, 3, %d, %d\)" % (card.size_multiple, h + 1, w)):
        model(torch.rand(1, 3, h + 1, w))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("conv", [torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 5, padding=2, groups=8), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)])
def test_fused_conv_is_the_conv_then_gelu_or_the_residual(conv, channels_last):
    from derain.models.layers import fused_conv

    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 8, 20, 24).contiguous(memory_format=layout)
    with torch.no_grad():
        y = conv(x)
        residual = torch.randn_like(y)
        torch.testing.assert_close(fused_conv(conv, x, gelu=True), F.gelu(y), rtol=0, atol=1e-5)
        torch.testing.assert_close(fused_conv(conv, x, residual=residual), y + residual, rtol=0, atol=1e-5)
        torch.testing.assert_close(fused_conv(conv, x), y, rtol=0, atol=1e-5)
    # with autograd the unfused ops run, and gradients flow
    fused_conv(conv, x.requires_grad_(), gelu=True).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None


def test_conv_chunks_equal_chunks_of_the_whole_conv():
    from derain.models.layers import conv_chunks

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 12, 1)
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    for got, expected in zip(conv_chunks(conv, x, 2), conv(x).chunk(2, dim=1)):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="ungrouped conv, got groups=4"):
        conv_chunks(torch.nn.Conv2d(8, 8, 3, groups=4), x, 2)

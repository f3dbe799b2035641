"""Padding, blended tiling, the official protocols and the high-level call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import derain
from derain.inference import (
    Deraining,
    derain as derain_image,
    drsformer_official,
    pad_to_multiple,
    tile_starts,
    tiled_forward,
    inference_card,
    windowed_official,
)
from derain.inference.working_size import shrunk_size


class Identity(nn.Module):
    def forward(self, x):
        return x


class Recorder(nn.Module):
    """Identity that records the shape of every batch it sees."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x


def local_cnn(seed: int = 0) -> nn.Module:
    """Three 3×3 convolutions: each output pixel sees a radius of 3 input pixels."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1),
    ).eval()


def tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return derain.create_model(name, **derain.model_card(name).tiny_config).eval()


# --- padding ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 1), (5, 6), (8, 8), (17, 30)])
@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_pad_to_multiple_shapes_and_crop(size, multiple):
    x = torch.rand(2, 3, *size)
    padded, (h, w) = pad_to_multiple(x, multiple)
    assert (h, w) == size
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(padded[..., :h, :w], x)


def test_pad_reflects_like_torch_when_possible_and_mirrors_tiny_images():
    x = torch.rand(1, 3, 10, 13)
    padded, _ = pad_to_multiple(x, 8)
    assert torch.equal(padded, torch.nn.functional.pad(x, (0, 3, 0, 6), mode="reflect"))
    row = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    padded, _ = pad_to_multiple(row, 8)
    assert padded.shape == (1, 1, 8, 8)
    assert padded[0, 0, 0].tolist() == [1, 2, 3, 2, 1, 2, 3, 2]  # mirrored twice
    assert torch.equal(padded[0, 0, 7], padded[0, 0, 0])  # the 1-pixel side replicated


def test_pad_min_size():
    padded, _ = pad_to_multiple(torch.rand(1, 3, 5, 70), 16, min_size=64)
    assert padded.shape[-2:] == (64, 80)


def test_pad_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(3, 4, 4\)"):
        pad_to_multiple(torch.rand(3, 4, 4), 8)
    with pytest.raises(ValueError, match="multiple must be >= 1, got 0"):
        pad_to_multiple(torch.rand(1, 3, 4, 4), 0)


# --- tiling ----------------------------------------------------------------------------


@pytest.mark.parametrize("size,tile,overlap", [(10, 16, 4), (16, 16, 4), (17, 16, 4), (100, 32, 8), (33, 8, 7)])
def test_tile_starts_cover_and_stay_inside(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    covered = np.zeros(size, bool)
    for s in starts:
        assert 0 <= s and s + min(tile, size) <= size
        covered[s : s + tile] = True
    assert covered.all() and starts[0] == 0
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.fuzz
@pytest.mark.parametrize("size", [(1, 1), (3, 50), (31, 17), (64, 64), (65, 130)])
@pytest.mark.parametrize("tile,overlap", [(16, 0), (16, 4), (24, 8), (32, 31)])
def test_identity_is_reconstructed_for_any_tiling(size, tile, overlap):
    x = torch.rand(2, 3, *size)
    restored = tiled_forward(Identity(), x, tile, overlap, multiple=8, min_size=16)
    # float32 rounding of the weighted sums only: far below half a 16-bit level (7.6e-6)
    torch.testing.assert_close(restored, x, rtol=0, atol=6e-6)


@pytest.mark.parametrize("dtype,overlap", [(np.uint8, 5), (np.uint16, 31)])
def test_identity_round_trip_is_exact_in_integers(dtype, overlap):
    image = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, (37, 91, 3), dtype=dtype)
    derainer = Deraining(Identity(), tile=32, overlap=overlap, device="cpu")
    np.testing.assert_array_equal(derainer(image), image)


def test_tiled_cnn_differs_only_near_tile_borders():
    model, radius = local_cnn(), 3
    x = torch.rand(1, 3, 70, 90)
    tile, overlap = 32, 12
    with torch.no_grad():
        whole = model(x)
        tiled = tiled_forward(model, x, tile, overlap)
    diff = (tiled - whole).abs().amax(1)[0]
    near_border = torch.zeros(70, 90, dtype=torch.bool)
    for axis, size in ((0, 70), (1, 90)):
        for start in tile_starts(size, tile, overlap):
            for edge in (start, start + tile):
                if 0 < edge < size:  # inner tile edges only
                    band = slice(max(edge - radius, 0), edge + radius)
                    if axis == 0:
                        near_border[band, :] = True
                    else:
                        near_border[:, band] = True
    assert diff[~near_border].max() < 1e-5
    assert diff[near_border].max() > 1e-3  # the test would notice a wrong mask


def test_tiles_bound_the_model_input_and_batch():
    recorder = Recorder()
    x = torch.rand(1, 3, 300, 410)
    tiled_forward(recorder, x, tile=64, overlap=16, multiple=8, batch_size=3)
    assert {s[-2:] for s in recorder.shapes} == {(64, 64)}
    assert max(s[0] for s in recorder.shapes) == 3


def test_batching_tiles_does_not_change_the_result():
    model, x = local_cnn(), torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        one = tiled_forward(model, x, 24, 8, batch_size=1)
        many = tiled_forward(model, x, 24, 8, batch_size=5)
    torch.testing.assert_close(one, many)


def test_tiled_forward_rejects_bad_settings():
    with pytest.raises(ValueError, match="overlap < tile, got tile=16, overlap=16"):
        tiled_forward(Identity(), torch.rand(1, 3, 8, 8), 16, 16)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        tiled_forward(Identity(), torch.rand(1, 3, 8, 8), 16, 4, batch_size=0)


# --- official protocols ----------------------------------------------------------------


class WindowIndex(nn.Module):
    """Replaces every window by its position in the batch, to see who filled which pixel."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        index = torch.arange(x.shape[0], dtype=x.dtype).view(-1, 1, 1, 1)
        return [index.expand_as(x) / 100, x[..., ::2, ::2]]  # finest output first, like DMSR


def test_windowed_official_pastes_like_window_reversex():
    model = WindowIndex()
    out = windowed_official(model, torch.rand(1, 3, 300, 270), window=128) * 100
    assert model.batches == [2 * 2 + 2 + 2 + 1]  # one forward: grid, right, bottom, corner
    got = out[0, 0].round().long()
    assert got[0, 0] == 0 and got[0, 128] == 1 and got[128, 0] == 2 and got[128, 128] == 3
    assert got[0, 256] == 4 and got[128, 269] == 5  # right-edge windows, rows 0 and 1
    assert got[256, 0] == 6 and got[299, 200] == 7  # bottom-edge windows, columns 0 and 1
    assert got[299, 269] == 8  # corner
    assert got[:256, :256].unique().tolist() == [0, 1, 2, 3]  # edge windows never overwrite the grid


def test_windowed_official_identity_and_small_image_error():
    x = torch.rand(1, 3, 130, 128)
    assert torch.equal(windowed_official(Identity(), x), x)
    with pytest.raises(ValueError, match="at least 128x128, got 100x300"):
        windowed_official(Identity(), torch.rand(1, 3, 300, 100))


class CallCounter(nn.Module):
    """Returns the number of the call (1, 2, ...) everywhere."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.full_like(x, float(self.calls))


def test_drsformer_official_averages_tiles_uniformly():
    counter = CallCounter()
    x = torch.rand(1, 3, 60, 40)  # padded to 64x40, so the tile is min(40, 64, 40) = 40
    restored = drsformer_official(lambda t: counter(t) / 10, x, tile=40, overlap=32)
    assert counter.calls == 4  # tile rows at 0, 8, 16 and 24 (flush with the bottom)
    assert restored.shape == x.shape
    assert restored[0, 0, 0, 0].item() == pytest.approx(0.1)  # only the first tile
    assert restored[0, 0, 30, 0].item() == pytest.approx((0.1 + 0.2 + 0.3 + 0.4) / 4)


def test_drsformer_official_whole_image_is_pad_to_8():
    model = tiny("drsformer")
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
        expected = model(padded).clamp(0, 1)[..., :21, :30]
        torch.testing.assert_close(drsformer_official(model, x), expected)
    with pytest.raises(ValueError, match="multiple of 8, got 20"):
        drsformer_official(model, x, tile=20)


# --- the high-level call -----------------------------------------------------------------


@pytest.mark.parametrize("name", derain.list_models())
def test_every_registered_model_on_odd_sizes(name):
    derainer = Deraining(tiny(name), device="cpu", tile=48, overlap=8, batch_size=2)
    for size in [(1, 1), (13, 70), (50, 49)]:
        image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        assert derainer(image).shape == image.shape


def test_card_and_defaults():
    spec = inference_card(tiny("dmsr"))
    card = derain.model_card("dmsr")
    assert (spec.name, spec.size_multiple, spec.min_size) == ("dmsr", card.size_multiple, card.min_size)
    unknown = inference_card(Identity())
    assert (unknown.size_multiple, unknown.min_size, unknown.batch_independent, unknown.half_precision) == (1, 1, True, True)
    assert unknown.tile is None
    assert Deraining(tiny("cpraformer"), device="cpu", batch_size=8).batch_size == 1


class Wrapper(nn.Module):
    """Holds the model as ``module``, as DistributedDataParallel does."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


@pytest.mark.parametrize("wrap", ["subclass", "ddp", "compile"])
def test_wrapped_models_keep_their_card(wrap):
    model = tiny("dmsr")
    if wrap == "subclass":
        model = type("MyDMSR", (type(model),), {})(**derain.model_card("dmsr").tiny_config)
    elif wrap == "ddp":
        model = Wrapper(model)
    else:
        model = torch.compile(model)  # compiles at the first call, which this test never makes
    assert inference_card(model).size_multiple == 16 and inference_card(model).name == "dmsr"


def test_the_api_tiles_as_the_card_advises():
    model = tiny("drsformer")
    card = derain.model_card("drsformer")
    derainer = Deraining(model, device="cpu")
    assert (derainer.tile, derainer.overlap) == ("auto", card.overlap)  # memory-aware, at least card.tile
    assert card.tile == 256 and card.overlap == 16
    assert Deraining(model, device="cpu", protocol="official").tile is None  # the official script's default
    assert Deraining(model, device="cpu", tile=None).tile is None
    with pytest.raises(ValueError, match="tile must be a number of pixels, None or 'auto', got 'big'"):
        Deraining(model, device="cpu", tile="big")


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (20, 30), dtype=np.uint16),
        np.random.default_rng(3).integers(0, 256, (20, 30, 4), dtype=np.uint8),
        np.random.default_rng(4).random((20, 30, 3), dtype=np.float32),
    ],
    ids=["rgb8", "gray16", "rgba8", "float"],
)
def test_arrays_come_back_as_the_same_kind(image):
    out = derain_image(image, Identity(), device="cpu")
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_alpha_is_untouched_and_gray_stays_gray_with_a_real_model():
    rgba = np.random.default_rng(0).integers(0, 256, (24, 24, 4), dtype=np.uint8)
    derainer = Deraining(tiny("drsformer"), device="cpu")
    out = derainer(rgba)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert derainer(rgba[..., 0]).shape == (24, 24)


def test_pil_and_tensor_inputs():
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8))
    out = derain_image(pil.convert("P"), Identity(), device="cpu")
    assert isinstance(out, Image.Image) and out.size == (12, 10) and out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(pil.convert("P").convert("RGB")))
    gray16 = Image.fromarray(np.full((4, 5), 40000, np.uint16))
    assert np.asarray(derain_image(gray16, Identity(), device="cpu")).max() == 40000

    for shape in [(3, 10, 12), (2, 3, 10, 12), (1, 10, 12)]:
        tensor = torch.rand(shape, dtype=torch.float64)
        restored = derain_image(tensor, Identity(), device="cpu")
        assert restored.shape == shape and restored.dtype == torch.float64
        torch.testing.assert_close(restored, tensor, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="float tensor"):
        derain_image(torch.zeros(3, 4, 4, dtype=torch.uint8), Identity(), device="cpu")
    with pytest.raises(TypeError, match="got list"):
        derain_image([[0]], Identity(), device="cpu")


def test_weights_loading_and_its_errors(tmp_path):
    model = tiny("drsformer")
    config = dict(derain.model_card("drsformer").tiny_config)
    path = derain.save_weights(tmp_path / "w.pth", model, "drsformer", config)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = Deraining(model, device="cpu")(image)
    np.testing.assert_array_equal(Deraining(weights=path, device="cpu")(image), expected)
    np.testing.assert_array_equal(Deraining("drsformer", path, device="cpu")(image), expected)
    with pytest.raises(derain.CheckpointError, match="not found"):
        Deraining("drsformer", tmp_path / "missing.pth")
    with pytest.raises(derain.CheckpointError, match="does not fit"):
        Deraining(tiny("dmsr"), path)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        Deraining("nope")


def test_setting_errors():
    with pytest.raises(ValueError, match="half_precision=False"):
        Deraining(tiny("drsformer"), precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16, got 'fp64'"):
        Deraining(Identity(), precision="fp64")
    with pytest.raises(ValueError, match="no official test protocol is known for Identity"):
        Deraining(Identity(), protocol="official")


def test_bf16_runs_and_stays_close():
    model, image = tiny("drsformer"), torch.rand(1, 3, 16, 16)
    fp32 = Deraining(model, device="cpu").restore(image)
    bf16 = Deraining(model, device="cpu", precision="bf16").restore(image)
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.1


def test_official_protocol_through_the_api():
    model = tiny("cpraformer")
    x = torch.rand(1, 3, 130, 140)
    with torch.no_grad():
        expected = windowed_official(model, x)
    torch.testing.assert_close(Deraining(model, device="cpu", protocol="official").restore(x), expected)


def test_without_weights_the_default_pretrained_model_is_used(tmp_path, monkeypatch):
    from conftest import install_pretrained
    from test_pretrained import install_tiny_pretrained

    install_pretrained(monkeypatch, None)
    with pytest.raises(ValueError, match=f"no pretrained weights '{derain.pretrained.DEFAULT_TAG}' are installed"):
        Deraining("drsformer")
    model = install_tiny_pretrained(tmp_path, monkeypatch)
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(Deraining(device="cpu")(image), Deraining(model, device="cpu")(image))
    with pytest.raises(ValueError, match="are for 'drsformer', not 'dmsr'"):
        Deraining("dmsr")


# --- working size ------------------------------------------------------------------------


class Offset(nn.Module):
    """Removes a uniform layer of 0.1: smooth rain, the same at every scale."""

    def forward(self, x):
        return x - 0.1


def test_shrunk_size_keeps_the_aspect_and_leaves_small_images_alone():
    assert shrunk_size(300, 400, 480) is None and shrunk_size(480, 640, 480) is None
    assert shrunk_size(960, 1441, 480) == (480, 720)
    assert shrunk_size(2000, 500, 250) == (1000, 250)
    assert shrunk_size(960, 1440, None) is None


def test_the_rain_of_a_shrunk_copy_is_subtracted_then_the_model_runs_at_full_size():
    recorder = Recorder()
    x = torch.rand(1, 3, 96, 160) * 0.7 + 0.3
    restored = Deraining(recorder, device="cpu", tile=None, working_size=48).restore(x)
    assert recorder.shapes == [(1, 3, 48, 80), (1, 3, 96, 160)]
    torch.testing.assert_close(restored, x)  # no rain found, every full-size pixel kept
    # the smooth layer found on the copy comes off the whole image, then the full-size pass's
    twice = Deraining(Offset(), device="cpu", tile=None, working_size=48).restore(x)
    torch.testing.assert_close(twice, x - 0.2, atol=1e-5, rtol=0)
    recorder.shapes.clear()
    Deraining(recorder, device="cpu", tile=None, working_size=96).restore(x)
    assert recorder.shapes == [(1, 3, 96, 160)]  # not larger than the working size: the image itself


def test_tiles_apply_to_the_shrunk_copy():
    recorder = Recorder()
    Deraining(recorder, device="cpu", tile=64, overlap=8, working_size=100).restore(torch.rand(1, 3, 200, 300))
    assert recorder.shapes and all(shape[-2:] == (64, 64) for shape in recorder.shapes)
    shrunk, full = (len(tile_starts(h, 64, 8)) * len(tile_starts(w, 64, 8)) for h, w in [(100, 150), (200, 300)])
    assert len(recorder.shapes) == shrunk + full


def test_working_size_comes_from_the_pretrained_card_and_can_be_overridden(tmp_path, monkeypatch):
    from test_pretrained import install_tiny_pretrained, tiny_card_fields

    install_tiny_pretrained(tmp_path, monkeypatch)
    assert Deraining(device="cpu").working_size is None  # a card without working_size
    fields = tiny_card_fields() | {"working_size": 32}
    card = derain.pretrained.save_pretrained(tiny("drsformer"), tmp_path, **fields)
    assert card.summary().endswith("larger photos in two passes, the first at 32 px")
    model = derain.pretrained.load_pretrained()
    assert inference_card(model).working_size == 32
    assert Deraining(model, device="cpu").working_size == 32
    assert Deraining(model, device="cpu", working_size=None).working_size is None
    assert Deraining(model, device="cpu", working_size=64).working_size == 64
    assert Deraining(model, device="cpu", protocol="official").working_size is None
    assert derain.model_card("drsformer").working_size is None  # the architecture's own card is untouched
    with pytest.raises(ValueError, match="official protocol runs whole images"):
        Deraining(model, device="cpu", protocol="official", working_size=64)
    for bad in (8, "big", 64.5, True):
        with pytest.raises(ValueError, match=f"working size must be a whole number of pixels >= 16 or None, got {bad!r}"):
            Deraining(model, device="cpu", working_size=bad)

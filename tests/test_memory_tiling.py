"""Memory-aware tiles: the chooser, the probe, and the halving after an out-of-memory error."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import derain
from derain.inference import Deraining, memory
from derain.registry import unknown_card


def tiny(name: str = "drsformer") -> torch.nn.Module:
    torch.manual_seed(0)
    return derain.create_model(name, **derain.model_card(name).tiny_config).eval()


def test_less_memory_gives_a_smaller_tile_never_below_the_cards_on_a_gpu():
    card = derain.model_card("drsformer")
    tiles = [memory.choose_tile(gib * 2**30, 20_000, card, device_type="cuda") for gib in (64, 16, 4, 1)]
    assert tiles == sorted(tiles, reverse=True) and tiles[0] > tiles[1] > tiles[2]
    assert all(t % card.size_multiple == 0 for t in tiles)
    assert tiles[-1] == card.tile  # 1 GiB would allow less: the card's tile is the smallest useful one
    assert memory.choose_tile(None, 20_000, card) == card.tile  # memory unknown: the card's advice


def test_a_cpu_keeps_the_cards_tile_unless_memory_is_short():
    card = derain.model_card("drsformer")
    assert memory.choose_tile(64 * 2**30, 20_000, card) == card.tile  # larger tiles only cost time
    short = memory.choose_tile(600 * 2**20, 20_000, card)
    assert memory.MIN_TILE <= short < card.tile and short % card.size_multiple == 0


def test_the_chooser_counts_the_batch_and_the_cpu_image_buffers():
    card = dataclasses.replace(unknown_card("net"), tile=4096, size_multiple=4)  # a tile memory caps
    alone = memory.choose_tile(2**30, 1000, card)
    assert memory.choose_tile(2**30, 1000, card, batch_size=4) < alone
    assert memory.choose_tile(2**30, 1000, card, image_pixels=10_000_000) < alone
    assert memory.choose_tile(2**30, 1000, card, image_pixels=10_000_000, device_type="cuda") > alone


def test_the_probe_is_measured_once_per_model_device_and_precision(monkeypatch):
    model, card = tiny(), derain.model_card("drsformer")
    calls = []
    real = memory.measure_bytes_per_pixel
    monkeypatch.setattr(memory, "measure_bytes_per_pixel", lambda *a: calls.append(1) or real(*a))
    first = memory.bytes_per_pixel(model, card, torch.device("cpu"), "fp32")
    assert memory.bytes_per_pixel(model, card, torch.device("cpu"), "fp32") == first
    assert len(calls) == 1
    memory.bytes_per_pixel(model, card, torch.device("cpu"), "bf16")
    assert len(calls) == 2
    # more than the 3 channels of float32 in and out: the features between them count
    assert first > 24


def test_the_probe_sees_the_features_alive_at_once():
    class Wide(torch.nn.Module):
        def forward(self, x):
            features = x.repeat(1, 100, 1, 1)  # 300 float32 channels alive at once
            return features[:, :3] * 2

    per_pixel = memory.measure_bytes_per_pixel(Wide(), unknown_card("wide"), torch.device("cpu"))
    assert 300 * 4 <= per_pixel < 400 * 4


class OutOfMemoryAbove(torch.nn.Module):
    """``model`` that fails as the CPU allocator does on inputs with a side above ``limit``."""

    def __init__(self, model: torch.nn.Module, limit: int):
        super().__init__()
        self.model, self.limit, self.sides = model, limit, []
        self.derain_card = derain.model_card("drsformer")

    def forward(self, x):
        self.sides.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")
        return self.model(x)


def test_an_out_of_memory_error_halves_the_tile_and_gives_the_output_of_that_tile(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**40)  # room for any tile
    model = tiny()
    failing = OutOfMemoryAbove(model, limit=200)
    x = torch.rand(1, 3, 300, 260, generator=torch.Generator().manual_seed(1))
    derainer = Deraining(failing, device="cpu")
    with pytest.warns(memory.TileWarning, match="out of memory on cpu with 256-pixel tiles; retrying with 128"):
        restored = derainer.restore(x)
    assert derainer.last_tile == 128
    expected = Deraining(model, device="cpu", tile=128).restore(x)
    torch.testing.assert_close(restored, expected, rtol=0, atol=0)
    # the next image starts from the tile that fitted, without a second warning
    failing.sides.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        derainer.restore(x)
    assert max(failing.sides) <= 200


def test_the_halving_stops_at_the_floor_and_other_errors_pass_through(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**40)
    monkeypatch.setattr(memory, "bytes_per_pixel", lambda *args: 1000.0)  # the probe would fail too
    derainer = Deraining(OutOfMemoryAbove(tiny(), limit=8), device="cpu")
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="not enough memory"):
        derainer.restore(torch.rand(1, 3, 300, 300))
    assert derainer.last_tile == memory.tile_floor(derainer.card, derainer.overlap) == 64

    class Broken(torch.nn.Module):
        derain_card = derain.model_card("drsformer")

        def forward(self, x):
            raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="shapes do not match"):
        Deraining(Broken(), device="cpu").restore(torch.rand(1, 3, 300, 300))


def test_an_explicit_tile_is_honoured_exactly(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**40)
    failing = OutOfMemoryAbove(tiny(), limit=100)
    with pytest.raises(RuntimeError, match="not enough memory"):
        Deraining(failing, device="cpu", tile=128).restore(torch.rand(1, 3, 300, 300))
    assert set(failing.sides) == {128}


def test_auto_on_a_cpu_takes_a_smaller_tile_when_memory_is_short(monkeypatch):
    model = tiny()
    x = torch.rand(1, 3, 600, 600)
    per_pixel = memory.bytes_per_pixel(model, derain.model_card("drsformer"), torch.device("cpu"), "fp32")
    image_bytes = memory.FULL_IMAGE_BYTES_PER_PIXEL * 600 * 600
    chosen = {}
    for name, available in (("short", int(2 * (image_bytes + per_pixel * 128**2))), ("ample", int(4 * (image_bytes + per_pixel * 400**2)))):
        monkeypatch.setattr(memory, "available_memory", lambda device, a=available: a)
        chosen[name] = Deraining(model, device="cpu").auto_tile(x)
    assert chosen["short"] < 256 and chosen["ample"] == 256


@pytest.mark.parametrize(
    "error, expected",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), True),
        (RuntimeError("MPS backend out of memory"), True),
        (RuntimeError("Given groups=1, weight of size [8, 3, 3, 3]"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_out_of_memory_errors_are_recognised(error, expected):
    assert memory.is_out_of_memory(error) is expected


def test_a_progress_bar_over_the_tiles_when_asked(capsys):
    from derain.inference import tiled_forward

    x = torch.rand(1, 3, 64, 64)
    tiled_forward(lambda t: t, x, tile=32, overlap=8, progress=True)
    assert "tiles" in capsys.readouterr().err
    tiled_forward(lambda t: t, x, tile=32, overlap=8)  # progress=False by default
    assert capsys.readouterr().err == ""
    tiled_forward(lambda t: t, x, tile=32, overlap=8, progress=None)  # few tiles, not a terminal
    assert capsys.readouterr().err == ""


def test_the_command_prints_derains_warnings_as_one_line():
    from derain.cli import main

    line = main._one_line("out of memory on cpu with 304-pixel tiles", memory.TileWarning, "/x/api.py", 9)
    assert line == "derain: warning: out of memory on cpu with 304-pixel tiles\n"
    assert "/x/api.py:9" in main._one_line("old", DeprecationWarning, "/x/api.py", 9)


def test_a_probe_that_runs_out_of_memory_leaves_the_cards_tile(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**40)

    class FailsOnTheProbe(OutOfMemoryAbove):
        def forward(self, x):
            if max(x.shape[-2:]) == memory.PROBE_SIDE:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.model(x)

    derainer = Deraining(FailsOnTheProbe(tiny(), limit=0), device="cpu")
    assert derainer.auto_tile(torch.rand(1, 3, 600, 600)) == derainer.card.tile == 256

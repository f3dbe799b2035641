"""The fuzz lane: damaged and hostile bytes into the image reader, the checkpoint loader and the
config loader. Each either returns a valid result or raises its own error naming the file; nothing
else escapes, and no external program starts.

Inputs are valid files derain writes, then mutated: bytes overwritten, cut, inserted, or a
foreign header put in front. ``pytest -m fuzz --hypothesis-profile long`` runs the long budget.
"""

from __future__ import annotations

import io
import subprocess
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import tifffile
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as safetensors_bytes

import derain
from derain.checkpoint import CheckpointError
from derain.imageio import ImageReadError, read_image, write_image
from derain.training import ConfigError, load_config
from test_config_values import recipe

pytestmark = pytest.mark.fuzz

_RNG = np.random.default_rng(0)
_FOREIGN_HEADERS = [
    b"%!PS-Adobe-3.0 EPSF-3.0\n",  # EPS: Ghostscript, if Pillow were allowed to decode it
    b"GIF89a",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000
    b"PK\x03\x04",
    b"\x80\x02",
]


def _encoded(write) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _image_seeds(folder) -> dict[str, bytes]:
    rgb8 = _RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    seeds = {}
    for suffix, array in [(".png", rgb8), (".jpg", rgb8), (".webp", rgb8), (".bmp", rgb8),
                          (".png", _RNG.integers(0, 65536, (7, 9, 4), dtype=np.uint16)),
                          (".tif", _RNG.integers(0, 65536, (7, 9, 3), dtype=np.uint16))]:
        path = write_image(folder / f"seed{len(seeds)}{suffix}", array)
        seeds[path.name] = path.read_bytes()
    for compression in ("lzw", "zstd"):
        seeds[f"{compression}.tif"] = _encoded(lambda f: tifffile.imwrite(
            f, _RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16), photometric="rgb", compression=compression, tile=(16, 16)))
    seeds["progressive.jpg"] = _encoded(lambda f: Image.fromarray(rgb8).save(f, "JPEG", progressive=True))
    return seeds


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A seed file's name and its bytes after a few random edits."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["overwrite", "cut", "insert", "header"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if edit == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[:0] = draw(st.sampled_from(_FOREIGN_HEADERS))
    return name, bytes(data)


@contextmanager
def no_external_programs():
    """Fail the test if anything starts a process (Pillow's EPS plugin runs Ghostscript)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"an external program was started: {args[:1]}")

    with mock.patch.object(subprocess, "Popen", refuse):
        yield


def _fuzzed_file(folder, data, seeds):
    """A mutated seed, written under ``folder`` with the seed's suffix."""
    name, content = data.draw(mutated(seeds))
    path = folder / f"fuzzed{name}"
    path.write_bytes(content)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def image_seeds(folder):
    return _image_seeds(folder)


@given(data=st.data())
def test_image_reader_returns_an_image_or_names_the_file(folder, image_seeds, data):
    path = _fuzzed_file(folder, data, image_seeds)
    with no_external_programs():
        try:
            image = read_image(path, max_pixels=4_000_000)
        except ImageReadError as err:
            assert str(err).startswith(str(path))
            return
    assert image.dtype in (np.uint8, np.uint16)
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))


def _checkpoint_seeds(folder) -> dict[str, bytes]:
    config = dict(derain.model_card("dmsr").tiny_config)
    model = derain.create_model("dmsr", **config)
    seeds = {}
    for name in ("zip.pth", "meta.safetensors"):
        seeds[name] = derain.save_weights(folder / name, model, "dmsr", config).read_bytes()
    seeds["bare.safetensors"] = safetensors_bytes(model.state_dict())
    seeds["legacy.pth"] = _encoded(lambda f: torch.save({"state_dict": model.state_dict()}, f,
                                                        _use_new_zipfile_serialization=False))
    return seeds


@pytest.fixture(scope="module")
def checkpoint_seeds(folder):
    return _checkpoint_seeds(folder)


@given(data=st.data())
def test_checkpoint_loader_returns_a_model_or_names_the_file(folder, checkpoint_seeds, data):
    path = _fuzzed_file(folder, data, checkpoint_seeds)
    try:
        model = derain.load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err) and "weights_only=False" not in str(err)
        return
    assert all(torch.isfinite(p).all() for p in model.parameters())


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=8), st.lists(st.integers(-2, 9), max_size=5), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
_KEYS = {
    "model": ["name", "init", "dim", "num_blocks", "heads", "mefc", "colour"],
    "data": ["patch_size", "val_crop", "workers", "augment", "pair_by"],
    "optim": ["lr", "eps", "betas", "grad_clip", "weight_decay", "name"],
    "schedule": ["name", "periods", "restart_weights", "eta_mins", "warmup_epochs"],
    "loss": ["name", "edge_weight", "fft_weight"],
    "train": ["batch_size", "iterations", "epochs", "keep_last", "ema_decay", "early_stop_patience"],
}


@st.composite
def overrides(draw) -> list[str]:
    """``section.key=value`` overrides with values of every YAML type, valid or not."""
    chosen = []
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(_KEYS)))
        key = draw(st.sampled_from(_KEYS[section]))
        value = yaml.safe_dump(draw(_VALUES), default_flow_style=True).removesuffix("\n...\n").strip()
        chosen.append(f"{section}.{key}={value}")
    return chosen


@given(overrides())
def test_config_loader_returns_a_config_or_names_the_key(changes):
    try:
        config = load_config(recipe(), changes, check_paths=False)
    except ConfigError as err:
        assert str(err).startswith("config: ") or "override" in str(err)
        return
    assert config.optim.lr >= 0 and (config.optim.grad_clip is None or config.optim.grad_clip > 0)


_RECIPE = {"recipe.yaml": yaml.safe_dump(recipe()).encode()}


@given(data=st.data())
def test_config_file_of_any_bytes(folder, data):
    content = data.draw(st.one_of(st.binary(max_size=200), mutated(_RECIPE).map(lambda case: case[1])))
    path = folder / "recipe.yaml"
    path.write_bytes(content)
    try:
        load_config(path, check_paths=False)
    except ConfigError as err:
        assert str(path) in str(err)

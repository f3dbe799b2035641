"""Training configuration values that torch would accept and train wrongly with: refused, naming the key."""

from __future__ import annotations

import pytest

from derain.training import ConfigError, load_config

TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "heads": [1, 2, 2, 4], "mefc": False}


def recipe(**sections) -> dict:
    raw = {
        "model": {"name": "drsformer", "config": dict(TINY)},
        "data": {"train_input": "rainy", "train_target": "clean"},
        "train": {"run_dir": "run", "iterations": 10},
        "schedule": {"name": "cosine_restart_cyclic", "periods": [5, 5], "restart_weights": [1, 1], "eta_mins": [0, 0]},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def test_the_base_recipe_is_valid():
    assert load_config(recipe(), check_paths=False).model.config == TINY


@pytest.mark.parametrize("override, message", [
    ("model.dim=-8", r"model\.config\.dim must be positive, got -8"),
    ("model.num_blocks=[1, 0, 1, 1]", r"model\.config\.num_blocks must be positive, got \[1, 0, 1, 1\]"),
    ("model.num_blocks=[1, 100000, 1, 1]", r"model\.config\.num_blocks is \[1, 100000, 1, 1\], over 4096"),
    ("model.ffn_expansion_factor=0.0", r"model\.config\.ffn_expansion_factor must be positive"),
    ("model.heads=[3, 3, 3, 3]", r"model\.config does not build a drsformer: ValueError: channels \(8\) must be divisible by the head count \(3\)"),
    ("model.dim=eight", r"model\.config\.dim must be int, found 'eight'"),
    ("model.num_blocks={}", r"model\.config\.num_blocks must be tuple, found \{\}"),  # fuzz lane: KeyError
    ("model.num_blocks=''", r"model\.config\.num_blocks must be tuple, found ''"),  # fuzz lane: IndexError
    ("model.num_blocks=[1, 1]", r"model\.config does not build a drsformer: IndexError"),
    ("optim.grad_clip=0", r"optim\.grad_clip must be greater than 0, got 0"),
    ("optim.lr=-1e-4", r"optim\.lr must be at least 0"),
    ("optim.lr=.nan", r"optim\.lr must be at least 0, got nan"),
    ("optim.betas=[0.9, 1.5]", r"optim\.betas must lie in \[0, 1\)"),
    ("schedule.periods=[5, 0]", r"schedule\.periods must be at least 1, got \[5, 0\]"),
    ("schedule.restart_weights=[1, -0.5]", r"schedule\.restart_weights must be at least 0"),
    ("schedule.eta_mins=[0, -1e-6]", r"schedule\.eta_mins must be at least 0"),
    ("loss.edge_weight=-0.05", r"loss\.edge_weight must be at least 0"),
    ("loss.fft_weight=-1", r"loss\.fft_weight must be at least 0"),
    ("data.val_crop=0", r"data\.val_crop must be at least 1, got 0"),
    ("train.device_batch_size=0", r"train\.device_batch_size must be at least 1"),
    ("train.early_stop_patience=0", r"train\.early_stop_patience must be at least 1"),
])
def test_impossible_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(recipe(), [override], check_paths=False)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    """Found by the fuzz lane: a bare UnicodeDecodeError escaped."""
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"\x80model: {}\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml: not UTF-8 text \(invalid start byte at byte 0\)"):
        load_config(path, check_paths=False)

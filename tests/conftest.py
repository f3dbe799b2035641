"""Shared test helpers: the golden-fixture weight synthesis of shared/golden/README.md, a tiny
checkpoint, and the set of installed pretrained weights as a test needs it."""

from __future__ import annotations

import os
from pathlib import Path

# Before torch starts OpenMP: idle threads sleep instead of spinning, which otherwise steals
# the cores of a shared machine (the tests start subprocesses and run beside other jobs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import derain  # noqa: E402

# The fuzz lane (tests marked ``fuzz``): a fixed seed and a small budget by default, so CI is
# repeatable and quick; ``pytest -m fuzz --hypothesis-profile long`` before a release.
_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_FUZZ)
settings.register_profile("long", max_examples=2000, **_FUZZ)
settings.load_profile("ci")

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"

_INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")


def synth_state_dict(manifest, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic float64 weights in the official state_dict order (manifest order)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, dtype in manifest:
        if dtype in _INTEGER_DTYPES:
            sd[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        t = torch.randn(shape, generator=g, dtype=torch.float64)
        sd[key] = t.abs() * 0.5 + 0.5 if key.endswith("running_var") else t * 0.1
    return sd


def as_list(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A checkpoint of a tiny DRSformer with fixed random weights, as ``derain.save_weights`` writes it."""
    torch.manual_seed(0)
    config = dict(derain.model_card("drsformer").tiny_config)
    model = derain.create_model("drsformer", **config)
    return derain.save_weights(tmp_path_factory.mktemp("w") / "tiny.pth", model, "drsformer", config)


def cli(module, argv: list[str]) -> int:
    """Run one ``derain`` sub-command module on ``argv`` in this process; its exit code."""
    import argparse

    parser = argparse.ArgumentParser(prog="derain")
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def install_pretrained(monkeypatch, folder: Path | None) -> None:
    """Make the cards in ``folder`` the installed pretrained weights for this test (none: ``None``)."""
    from derain import pretrained

    def catalogue() -> pretrained.Catalogue:
        return pretrained.Catalogue(*pretrained.installed_cards(folder)) if folder else pretrained.Catalogue({}, {})

    monkeypatch.setattr(pretrained, "catalogue", catalogue)


@pytest.fixture
def no_pretrained(monkeypatch) -> None:
    """An installation that ships no pretrained weights."""
    install_pretrained(monkeypatch, None)

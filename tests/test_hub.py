"""Hub folders written by ``derain export --format hub`` and read back through huggingface_hub's
cache, offline: a cache laid out as huggingface_hub lays it out, built here."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import derain
from derain import CheckpointError, hub
from derain.cli import export as export_cli
from derain.cli import run as run_cli

from conftest import cli

huggingface_hub = pytest.importorskip("huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")

NAME = "drsformer"
COMMIT_OLD = "a" * 40
COMMIT_NEW = "b" * 40


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return derain.create_model(NAME, **derain.model_card(NAME).tiny_config).eval()


def _export(model: torch.nn.Module, tmp_path: Path, folder: str) -> Path:
    weights = derain.save_weights(tmp_path / f"{folder}.pth", model, NAME, dict(derain.model_card(NAME).tiny_config))
    output = tmp_path / folder
    assert cli(export_cli, ["export", NAME, "--weights", str(weights), "--format", "hub", "-o", str(output)]) == 0
    return output


def _add_snapshot(cache: Path, repo_id: str, commit: str, folder: Path, refs: tuple[str, ...]) -> None:
    """Put ``folder`` into ``cache`` as huggingface_hub does: content-addressed blobs, a snapshot
    of links to them per commit, and refs naming commits."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, repo / "blobs" / digest)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", digest))
    for ref in refs:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, with huggingface_hub told to stay offline (environment and constants,
    since huggingface_hub reads the environment once, when first imported)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_export_writes_a_save_pretrained_folder_with_a_model_card(tmp_path):
    folder = _export(_tiny(0), tmp_path, "export")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    readme = (folder / "README.md").read_text()
    assert readme.startswith("---\n")
    meta = yaml.safe_load(readme.split("---\n")[1])
    card = derain.model_card(NAME)
    assert meta["library_name"] == "derain" and meta["license"] == "other"  # DRSformer publishes no licence
    assert meta["datasets"] == sorted(card.paper_results)
    results = meta["model-index"][0]["results"]
    psnr = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in results}
    assert psnr == {test_set: values[0] for test_set, values in card.paper_results.items()}
    assert "were not scored" in readme
    config = yaml.safe_load((folder / "config.json").read_text())
    assert config["architecture"] == NAME and config["config"] == dict(card.tiny_config)
    assert _same_weights(derain.load_checkpoint(folder), _tiny(0))


def test_licence_the_hub_knows_is_given_by_its_identifier():
    assert hub.card_metadata("dmsr", derain.model_card("dmsr"))["license"] == "apache-2.0"


def test_hub_names_load_from_the_cache_offline_with_revisions(tmp_path, offline_cache):
    old, new = _tiny(1), _tiny(2)
    _add_snapshot(offline_cache, "someone/drsformer-tiny", COMMIT_OLD, _export(old, tmp_path, "old"), ("v1",))
    _add_snapshot(offline_cache, "someone/drsformer-tiny", COMMIT_NEW, _export(new, tmp_path, "new"), ("main",))
    assert _same_weights(derain.load_checkpoint("hf-hub:someone/drsformer-tiny"), new)
    assert _same_weights(derain.load_checkpoint("hf-hub:someone/drsformer-tiny@main"), new)
    assert _same_weights(derain.load_checkpoint("hf-hub:someone/drsformer-tiny@v1"), old)
    assert _same_weights(derain.load_checkpoint(f"hf-hub:someone/drsformer-tiny@{COMMIT_OLD}"), old)


def test_missing_from_the_offline_cache_says_so_in_one_line(offline_cache):
    with pytest.raises(CheckpointError) as caught:
        derain.load_checkpoint("hf-hub:someone/absent@v2")
    message = str(caught.value)
    assert "hf-hub:someone/absent@v2" in message and "HF_HUB_OFFLINE" in message and "\n" not in message


@pytest.mark.parametrize("name", ["hf-hub:", "hf-hub:justname", "hf-hub:a/b/c", "hf-hub:a/b@", "hf-hub:../x"])
def test_malformed_hub_names_are_named(name):
    with pytest.raises(CheckpointError, match="not a Hub name"):
        derain.load_checkpoint(name)


def test_without_huggingface_hub_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(CheckpointError, match=r"pip install 'derain\[hub\]'"):
        derain.load_checkpoint("hf-hub:someone/drsformer-tiny")


def test_importing_and_using_derain_downloads_nothing(tmp_path):
    """No hf-hub name, no Hub: huggingface_hub is not even imported."""
    code = "import sys, derain; derain.load_checkpoint(sys.argv[1]); print('huggingface_hub' in sys.modules)"
    weights = derain.save_weights(tmp_path / "w.safetensors", _tiny(0), NAME, dict(derain.model_card(NAME).tiny_config))
    env = {**os.environ, "PYTHONPATH": str(Path(derain.__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", code, str(weights)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_derain_run_takes_hub_weights(tmp_path, offline_cache):
    model = _tiny(4)
    _add_snapshot(offline_cache, "someone/drsformer-tiny", COMMIT_NEW, _export(model, tmp_path, "run"), ("main",))
    photo = tmp_path / "rainy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    argv = ["run", str(photo), "-o", str(out), "--weights", "hf-hub:someone/drsformer-tiny", "--device", "cpu"]
    assert cli(run_cli, argv) == 0
    assert (out / "rainy.png").is_file()

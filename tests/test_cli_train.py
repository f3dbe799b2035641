"""``derain train`` failures that are the machine's, not the recipe's: one line each, no traceback."""

from __future__ import annotations

import argparse
import errno
import os
import sys

import pytest
import torch
import yaml

import derain
from derain.cli import train as train_command
from derain.training import run_state
from test_config_values import recipe


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="derain")
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_without_the_train_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe()))
    assert cli(["train", str(tmp_path / "r.yaml")]) == 2
    assert capsys.readouterr().err == (
        "derain train: needs accelerate, which the train extra installs: pip install 'derain[train]'\n"
    )


def test_a_run_folder_that_cannot_be_created(tmp_path, monkeypatch, capsys):
    for folder in ("rainy", "clean"):
        (tmp_path / folder).mkdir()
    (tmp_path / "in_the_way").write_text("a file")
    raw = recipe(train={"run_dir": str(tmp_path / "in_the_way" / "run")})
    raw["data"] = {"train_input": str(tmp_path / "rainy"), "train_target": str(tmp_path / "clean")}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert cli(["train", str(tmp_path / "r.yaml")]) == 1
    assert f"derain train: cannot write {tmp_path / 'in_the_way' / 'run'}: Not a directory" in capsys.readouterr().err


def test_a_full_disk_during_a_checkpoint_write_names_step_and_run(tmp_path, monkeypatch):
    config = dict(derain.model_card("dmsr").tiny_config)
    model = derain.create_model("dmsr", **config)
    run_state.save_checkpoint(tmp_path, 2, model, "dmsr", config, {}, keep_last=2)

    def disk_full(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(run_state.CheckpointWriteError, match=rf"cannot write checkpoint step 4: No space left on device \({tmp_path}\)"):
        run_state.save_checkpoint(tmp_path, 4, model, "dmsr", config, {}, keep_last=2)
    assert run_state.list_checkpoints(tmp_path) == [2]  # the older checkpoint is intact, resume works
    assert not list((tmp_path / "checkpoints").glob(".derain-*"))

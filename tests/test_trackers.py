"""Experiment trackers through Accelerate (``train.log_with``) and ``derain plot``."""

from __future__ import annotations

import importlib.util
import json

import pytest
from PIL import Image

from derain.cli import plot as plot_cli
from derain.training import ConfigError, load_config, train
from derain.training.plot import PlotError, joined_stages, plot_run

from conftest import cli
from test_training import make_pairs, tiny_config


@pytest.fixture
def pairs(tmp_path):
    return make_pairs(tmp_path / "data")


def _scalars(event_dir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_dir))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_tensorboard_through_accelerate_logs_what_log_jsonl_holds(tmp_path, pairs):
    pytest.importorskip("tensorboard")
    config = load_config(tiny_config(tmp_path, pairs, iterations=4, val_every=2, log_with=["tensorboard"]))
    run_dir = train(config)
    event_dir = run_dir / "trackers" / "derain"
    assert list(event_dir.glob("events.out.tfevents.*")), sorted(p.name for p in run_dir.rglob("*"))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [step for step, _ in _scalars(event_dir, "loss")] == [step for step, _ in losses]
    assert [value for _, value in _scalars(event_dir, "loss")] == pytest.approx([loss for _, loss in losses])
    assert [step for step, _ in _scalars(event_dir, "val_psnr")] == [r["step"] for r in records if "val_psnr" in r]


def test_older_tensorboard_switch_still_logs(tmp_path, pairs):
    pytest.importorskip("tensorboard")
    run_dir = train(load_config(tiny_config(tmp_path, pairs, iterations=2, tensorboard=True)))
    assert list((run_dir / "trackers" / "derain").glob("events.out.tfevents.*"))


def test_unknown_tracker_is_named(tmp_path, pairs):
    overridden = load_config(tiny_config(tmp_path, pairs), ("train.log_with=[tensorboard, wandb]",))
    assert overridden.train.log_with == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"train\.log_with\[0\] must be one of .*'wandb'.*got 'neptune'"):
        load_config(tiny_config(tmp_path, pairs, log_with=["neptune"]))


@pytest.mark.parametrize("tracker", ["wandb", "mlflow", "aim"])
def test_a_tracker_not_installed_says_what_to_install(tmp_path, pairs, tracker):
    if importlib.util.find_spec(tracker) is not None:
        pytest.skip(f"{tracker} is installed here")
    with pytest.raises(ConfigError, match=rf"train\.log_with names {tracker}, which is not installed: pip install {tracker}"):
        train(load_config(tiny_config(tmp_path, pairs, log_with=[tracker])))


def test_derain_plot_draws_a_run(tmp_path, pairs, capsys):
    run_dir = train(load_config(tiny_config(tmp_path, pairs, iterations=4, val_every=2)))
    assert cli(plot_cli, ["plot", str(run_dir)]) == 0
    png = run_dir / "curves.png"
    assert f"wrote {png}" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300


def test_plot_of_a_hand_written_log_and_its_errors(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(PlotError, match="log.jsonl: not found"):
        plot_run(run_dir)
    resumed = '{"step": 1, "loss": 0.5, "lr": 0.001}\n{"step": 2, "val_psnr": 20.0}\n{"step": 1, "loss": 0.4}\n'
    (run_dir / "log.jsonl").write_text(resumed)
    assert plot_run(run_dir, tmp_path / "out" / "c.png").is_file()
    (run_dir / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\nnot json\n')
    with pytest.raises(PlotError, match="line 2 is not JSON"):
        plot_run(run_dir)
    (run_dir / "log.jsonl").write_text('{"step": 1, "seconds": 2.0}\n')
    with pytest.raises(PlotError, match="no loss, val_psnr or lr"):
        plot_run(run_dir)
    assert cli(plot_cli, ["plot", str(tmp_path / "absent")]) == 2


def test_plot_joins_training_stages_at_the_checkpoint_each_started_from(tmp_path, capsys):
    first, second = tmp_path / "stage1", tmp_path / "stage2"
    first.mkdir(), second.mkdir()
    # stage 1 logged steps 1-3 but stage 2 started from its step-2 weights
    (first / "log.jsonl").write_text("".join(f'{{"step": {s}, "loss": {1 / s}, "lr": 0.1}}\n' for s in (1, 2, 3)))
    (second / "log.jsonl").write_text('{"step": 1, "loss": 0.2}\n{"step": 2, "val_psnr": 30.0}\n')
    (second / "config.yaml").write_text("model:\n  init: runs/stage1/checkpoints/step_00000002.ema.pth\n")
    (earlier, series1), (later, series2) = joined_stages([first, second])
    assert (earlier, later) == (first, second)
    assert series1["loss"] == [(1, 1.0), (2, 0.5)] and series1["lr"] == [(1, 0.1), (2, 0.1)]
    assert series2["loss"] == [(3, 0.2)] and series2["val_psnr"] == [(4, 30.0)]
    (second / "config.yaml").write_text("model:\n  init: derain-synth.safetensors\n")  # not a step: after stage 1's end
    assert joined_stages([first, second])[1][1]["loss"] == [(4, 0.2)]
    third = tmp_path / "stage3"  # started from stage 2's step 1: joined-axis step 3
    third.mkdir()
    (third / "log.jsonl").write_text('{"step": 1, "loss": 0.1}\n')
    (third / "config.yaml").write_text("model:\n  init: runs/stage2/checkpoints/step_00000001.ema.pth\n")
    (second / "config.yaml").write_text("model:\n  init: runs/stage1/checkpoints/step_00000002.ema.pth\n")
    stages = joined_stages([first, second, third])
    assert stages[1][1]["loss"] == [(3, 0.2)] and stages[1][1]["val_psnr"] == [] and stages[2][1]["loss"] == [(4, 0.1)]
    assert cli(plot_cli, ["plot", str(first), str(second), "-o", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").is_file() and "wrote" in capsys.readouterr().out

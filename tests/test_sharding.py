"""Jobs of many files: split across processes (torchrun), resumed with --skip-existing, batched.

The multi-process tests start ``torchrun`` with 2 CPU processes on a handful of 32-48 px
images and a tiny model; each takes a few seconds of work and mostly pays for starting Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import derain
from conftest import cli
from derain.cli import run as run_command
from derain.distributed import SUMMARY_NAME, Shard
from derain.imageio import write_image

SRC = Path(__file__).parent.parent / "src"


def rainy_folder(folder: Path, count: int, sizes=((32, 32), (48, 40))) -> Path:
    """``count`` noisy PNGs, sizes cycling through ``sizes`` (height, width)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        height, width = sizes[index % len(sizes)]
        write_image(folder / f"img_{index:02d}.png", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


def environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def derain_command(processes: int, *argv: str, script: str | None = None) -> subprocess.CompletedProcess:
    """``derain argv`` in ``processes`` fresh processes (torchrun for more than one)."""
    if processes == 1:
        launcher = [sys.executable, "-m", "derain.cli.main"]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        launcher += [script] if script else ["-m", "derain.cli.main"]
    return subprocess.run([*launcher, *argv], capture_output=True, text=True, env=environment(), timeout=120)


def test_shard_reads_the_launcher_variables_and_splits_every_item_once():
    assert Shard.from_environment({}) == Shard()
    meet = {"MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}
    shards = [Shard.from_environment({"RANK": str(r), "WORLD_SIZE": "3", "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "3", **meet}) for r in range(3)]
    items = list(range(10))
    taken = [item for shard in shards for item in shard.take(items)]
    assert sorted(taken) == items and shards[1].take(items) == [1, 4, 7]
    assert Shard(1, 2).device("cpu") == "cpu" and Shard().device("auto") == "auto"
    with pytest.raises(ValueError, match="RANK='one' is not a whole number"):
        Shard.from_environment({"RANK": "one", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK=2 and WORLD_SIZE=2"):
        Shard.from_environment({"RANK": "2", "WORLD_SIZE": "2", **meet})
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT unset: launch with torchrun"):
        Shard.from_environment({"RANK": "0", "WORLD_SIZE": "2"})


def test_a_bad_launcher_variable_or_batch_size_is_one_line(monkeypatch, weights, tmp_path, capsys):
    images = rainy_folder(tmp_path / "in", 1)
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert cli(run_command, ["run", str(images), "-o", str(tmp_path / "out"), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err == "derain run: error: environment variable WORLD_SIZE='two' is not a whole number\n"
    monkeypatch.delenv("WORLD_SIZE")
    assert cli(run_command, ["run", str(images), "-o", str(tmp_path / "out"), "--weights", str(weights), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "derain run: error: --batch-size must be >= 1, got 0\n"


def test_skip_existing_in_one_process_leaves_finished_outputs_alone(weights, tmp_path, capsys):
    images = rainy_folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    argv = ["run", str(images), "-o", str(out), "--weights", str(weights), "--device", "cpu"]
    assert cli(run_command, argv) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "img_01.png").unlink()  # as if the job had stopped before it
    capsys.readouterr()
    assert cli(run_command, [*argv, "--skip-existing"]) == 0
    assert "derained 1 image(s) in" in capsys.readouterr().err
    again = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert again.keys() == first.keys()
    assert all(again[name] == first[name] for name in first if name != "img_01.png")
    assert not (out / SUMMARY_NAME).exists()  # one process: the printed line is the summary


@pytest.mark.multiprocess
def test_two_processes_write_what_one_writes(weights, tmp_path):
    images = rainy_folder(tmp_path / "in", 7)
    (images / "img_03.png").write_bytes(b"not a PNG")  # one failure, reported once, in one line
    common = [str(images), "--weights", str(weights), "--device", "cpu", "--batch-size", "2"]
    assert cli(run_command, ["run", *common, "-o", str(tmp_path / "one")]) == 1
    two = derain_command(2, "run", *common, "-o", str(tmp_path / "two"))
    assert two.returncode != 0
    assert contents(tmp_path / "two") == contents(tmp_path / "one") and len(contents(tmp_path / "one")) == 6
    summary = json.loads((tmp_path / "two" / SUMMARY_NAME).read_text())
    assert summary["processes"] == 2 and summary["derained"] == 6 and summary["failed"] == 1
    assert len(summary["failures"]) == 1 and "img_03.png" in summary["failures"][0] and "\n" not in summary["failures"][0]
    assert two.stderr.count("derained 6 image(s) by 2 processes") == 1  # rank 0 alone reports


# Each process is killed (SIGKILL: no cleanup) half-way through writing its third output.
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from derain.cli import main, run
    from derain.files import atomic_write

    real_write, written = run.write_image, []

    def write_image(path, image):
        if len(written) == 2:
            with atomic_write(path) as tmp:
                tmp.write_bytes(b"\\x89PNG, the first bytes only")
                os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, image)
        written.append(path)

    run.write_image = write_image
    sys.exit(main.main())
    """
)


@pytest.mark.multiprocess
def test_a_killed_job_restarted_finishes_without_redoing_finished_files(weights, tmp_path):
    images = rainy_folder(tmp_path / "in", 9)
    out = tmp_path / "out"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    argv = ["run", str(images), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--skip-existing"]
    killed = derain_command(2, *argv, script=str(script))
    assert killed.returncode != 0
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.png")}
    assert 2 <= len(finished) <= 4 and not (out / SUMMARY_NAME).exists()
    assert list(out.glob(".derain-*.tmp"))  # a partial output, under its temporary name only

    restarted = derain_command(2, *argv)
    assert restarted.returncode == 0, restarted.stderr
    assert sorted(p.name for p in out.glob("*.png")) == [f"img_{i:02d}.png" for i in range(9)]
    assert {name: (out / name).stat().st_ino for name in finished} == {n: v[0] for n, v in finished.items()}
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == {n: v[1] for n, v in finished.items()}
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["skipped"] == len(finished) and summary["derained"] == 9 - len(finished)
    assert not list(out.glob(".derain-*.tmp"))  # no temporary of a killed writer is left


def test_batches_equal_batch_one_for_a_batch_independent_model(tmp_path, capsys):
    torch.manual_seed(0)
    config = {**derain.model_card("cpraformer").tiny_config, "batch_independent": True}
    model = derain.create_model("cpraformer", **config)
    independent = derain.save_weights(tmp_path / "independent.pth", model, "cpraformer", config)
    images = rainy_folder(tmp_path / "in", 7, sizes=((32, 32), (32, 32), (32, 32), (48, 40)))
    outputs = {}
    for batch in (1, 3):
        out = tmp_path / f"batch{batch}"
        argv = ["run", str(images), "-o", str(out), "--weights", str(independent), "--device", "cpu", "--batch-size", str(batch)]
        assert cli(run_command, argv) == 0
        outputs[batch] = contents(out)
    assert outputs[3] == outputs[1] and len(outputs[1]) == 7

    derainer = derain.Deraining(weights=independent, device="cpu", batch_size=4)
    assert derainer.batch_size == 4  # the checkpoint's batch_independent=True is honoured
    arrays = [np.asarray(np.random.default_rng(i).random((32, 32, 3)), np.float32) for i in range(5)]
    batched = derainer.derain_batch(arrays)
    np.testing.assert_allclose(np.stack(batched), np.stack([derainer(a) for a in arrays]), atol=1e-6)
    with pytest.raises(ValueError, match="one shape and dtype"):
        derainer.derain_batch([arrays[0], arrays[0][:16]])

    # The official mode shares one top-k count across the batch: it is never batched.
    official = derain.create_model("cpraformer", **derain.model_card("cpraformer").tiny_config)
    assert derain.Deraining(official, device="cpu", batch_size=4, tile=None).batch_size == 1


def test_video_takes_several_inputs_batches_frames_and_skips_finished_ones(weights, tmp_path, capsys):
    pytest.importorskip("av")
    from derain.cli import video as video_command

    clips = [rainy_folder(tmp_path / name, 3, sizes=((32, 48),)) for name in ("first", "second")]
    common = [*map(str, clips), "--weights", str(weights), "--device", "cpu"]
    assert cli(video_command, ["video", *common, "-o", str(tmp_path / "batch1")]) == 0
    assert cli(video_command, ["video", *common, "-o", str(tmp_path / "batch2"), "--batch-size", "2"]) == 0
    for clip in ("first", "second"):
        assert contents(tmp_path / "batch2" / clip) == contents(tmp_path / "batch1" / clip)
        assert len(contents(tmp_path / "batch1" / clip)) == 3
    capsys.readouterr()
    assert cli(video_command, ["video", *common, "-o", str(tmp_path / "batch1"), "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert "derained 0 video(s) in" in err and "; 2 already done; 0 failed" in err
    # bad input: one line naming the problem
    assert cli(video_command, ["video", *common, "-o", str(tmp_path / "out.mp4")]) == 2
    assert capsys.readouterr().err == f"derain video: error: {tmp_path / 'out.mp4'}: with 2 inputs, OUTPUT is a folder (a path without suffix)\n"


@pytest.mark.multiprocess
def test_two_processes_share_the_videos_of_a_job(weights, tmp_path):
    pytest.importorskip("av")
    from derain.cli import video as video_command

    clips = [rainy_folder(tmp_path / f"clip{i}", 2, sizes=((32, 32),)) for i in range(3)]
    common = [*map(str, clips), "--weights", str(weights), "--device", "cpu"]
    assert cli(video_command, ["video", *common, "-o", str(tmp_path / "one")]) == 0
    two = derain_command(2, "video", *common, "-o", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    for clip in clips:
        assert contents(tmp_path / "two" / clip.name) == contents(tmp_path / "one" / clip.name)
    summary = json.loads((tmp_path / "two" / SUMMARY_NAME).read_text())
    assert summary["derained"] == 3 and summary["processes"] == 2

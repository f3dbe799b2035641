"""Training in separate processes: two CPU ranks (gloo) and a run killed with SIGKILL then resumed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from derain.training import load_config, train
from test_training import assert_same_training, make_pairs, tiny_config, weights

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(1200)]  # two training runs per test


def run_python(script: str, *args: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *launcher, script, *args], env=env, capture_output=True, text=True, timeout=300
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_process(tmp_path):
    data = make_pairs(tmp_path / "data")
    near_sgd = {"eps": 1.0, "lr": 0.1}  # see assert_same_training
    raw = tiny_config(tmp_path / "two", data, iterations=3, checkpoint_every=3)
    raw["optim"].update(near_sgd)
    raw["data"]["val_input"] = raw["data"]["val_target"] = None
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(raw))
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent("""
        import sys, torch, accelerate
        from derain.training import train

        def end_training(self):  # every rank writes the weights it ends with
            model = self.unwrap_model(self._models[0])
            torch.save(model.state_dict(), f"{sys.argv[2]}/rank{self.process_index}.pt")

        accelerate.Accelerator.end_training = end_training
        train(sys.argv[1])
    """))
    launcher = ("-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}")
    done = run_python(str(script), str(tmp_path / "two.yaml"), str(tmp_path), launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    one = tiny_config(tmp_path / "one", data, iterations=3, checkpoint_every=3)
    one["optim"].update(near_sgd)
    one_run = train(load_config(one))
    assert_same_training(weights(one_run, 3), rank0)
    assert_same_training(weights(one_run, 3), weights(tmp_path / "two" / "run", 3))


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    data = make_pairs(tmp_path / "data")
    raw = tiny_config(tmp_path / "killed", data, iterations=6, checkpoint_every=2)
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(raw))
    script = tmp_path / "die.py"
    # SIGKILL while the state file of the second checkpoint (step 4) is half written: its
    # weights file is complete, its state is a truncated temporary file.
    script.write_text(textwrap.dedent("""
        import os, signal, sys, torch
        from derain.training import train

        save, calls = torch.save, []

        def save_or_die(obj, path, *args, **kwargs):
            calls.append(path)
            if len(calls) == 4:
                open(path, "wb").write(b"half a checkpoint")
                os.kill(os.getpid(), signal.SIGKILL)
            save(obj, path, *args, **kwargs)

        torch.save = save_or_die
        train(sys.argv[1])
    """))
    killed = run_python(str(script), str(tmp_path / "killed.yaml"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "killed" / "run"
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names[1:] == ["step_00000002.pth", "step_00000002.state.pt", "step_00000004.pth"]
    assert names[0].startswith(".derain-") and names[0].endswith(".tmp")
    # Every run in a subprocess with one thread: results of some kernels depend on the thread count.
    (tmp_path / "whole.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path / "whole", data, iterations=6, checkpoint_every=2)))
    runner = tmp_path / "run.py"
    runner.write_text(textwrap.dedent("""
        import sys
        from derain.training import train

        train(sys.argv[1], resume=sys.argv[2] == "resume")
    """))
    for target, mode in ((run_dir, "resume"), (tmp_path / "whole.yaml", "fresh")):
        done = run_python(str(runner), str(target), mode)
        assert done.returncode == 0, done.stderr[-3000:]
    assert not list((run_dir / "checkpoints").glob(".derain-*"))  # the killed run's temporary is swept
    expected, resumed = weights(tmp_path / "whole" / "run", 6), weights(run_dir, 6)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key

"""Atomic writes and derain's process settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from derain.files import atomic_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_atomic_write_gives_private_temporary_files_the_usual_mode(tmp_path):
    target = tmp_path / "weights.safetensors"
    with atomic_write(target) as tmp:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors creates them
        os.close(descriptor)
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def _settings_after(code: str, env: dict[str, str]) -> list[str]:
    """Run ``code`` in a fresh interpreter; it prints OMP_WAIT_POLICY and whether mallopt was applied."""
    clean = {k: v for k, v in os.environ.items() if k not in {"OMP_WAIT_POLICY", "DERAIN_CPU_TUNING"}
             and not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    return result.stdout.split()


_TUNED = "import os, derain.cpu; derain.cpu.tune(); print(os.environ.get('OMP_WAIT_POLICY')); print(derain.cpu.keep_freed_memory())"


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="mallopt is glibc's")
def test_atomic_write_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.png"
    # The name the temporary used to have: predictable from the target and the PID.
    (tmp_path / f".{target.name}.{os.getpid()}.tmp").symlink_to(victim)
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert victim.read_text() == "precious" and target.read_bytes() == b"new"


def test_atomic_write_of_a_name_at_the_length_limit(tmp_path):
    target = tmp_path / ("x" * 250 + ".png")
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_atomic_write_sweeps_temporaries_of_dead_processes_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".derain-{dead.stdout.strip()}-abc123.tmp"
    live = tmp_path / f".derain-{os.getppid()}-def456.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    with atomic_write(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out.png"]


def test_process_settings_respect_the_users_choices():
    assert _settings_after(_TUNED, {}) == ["PASSIVE", "True"]
    assert _settings_after(_TUNED, {"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "True"]
    assert _settings_after(_TUNED, {"MALLOC_ARENA_MAX": "2"}) == ["PASSIVE", "False"]
    assert _settings_after(_TUNED, {"DERAIN_CPU_TUNING": "0"})[0] == "None"


def test_importing_derain_leaves_the_process_alone():
    """A library must not retune its host: no environment change, no allocator call, no torch."""
    code = """
import os, sys
before = dict(os.environ)
import derain.cpu
calls = []
derain.cpu.tune = derain.cpu.keep_freed_memory = lambda *a: calls.append(a)
import derain
print('torch' in sys.modules)
derain.create_model, derain.Deraining, derain.load_checkpoint  # every public module, imported
from derain import pretrained, training
print(os.environ == before, calls == [])
"""
    assert _settings_after(code, {}) == ["False", "True", "True"]

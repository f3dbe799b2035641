"""Many files, many processes: split a job of ``derain run`` or ``derain video`` across the
processes that ``torchrun`` or ``accelerate launch`` start, on one node or many.

Nothing here needs a model. Every process lists the same inputs in the same order and takes
every ``world_size``-th one from its rank (round-robin, so large and small files spread
evenly); each file therefore has exactly one owner whatever the timing. Skipping finished
outputs happens *after* the split, inside each share: processes that start a little apart
would otherwise see different finished files and split differently. The processes meet once,
at the end, to hand their records to rank 0 (a gloo group: CPU or GPU, no NCCL needed), which
writes the one summary. If a process dies, the launcher stops the others; outputs are written
atomically, so a restart with ``--skip-existing`` redoes only what was not finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import torch

from .files import atomic_write

Item = TypeVar("Item")
SUMMARY_NAME = "derain-summary.json"
# The group waits at the end for the slowest process; an uneven share of a long video can
# take hours, and a dead process is stopped by the launcher anyway, not by this timeout.
GATHER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` of
    ``local_world_size`` on its node. ``Shard()`` is a job of one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Shard:
        """Read the variables torchrun and accelerate set (RANK, WORLD_SIZE, LOCAL_RANK,
        LOCAL_WORLD_SIZE, and MASTER_ADDR/MASTER_PORT where the processes meet); a
        ``ValueError`` names a variable that makes no sense."""
        values = {}
        for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", None), ("LOCAL_WORLD_SIZE", None)):
            text = environ.get(name)
            if text is None or text == "":
                values[name] = default
                continue
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(f"environment variable {name}={text!r} is not a whole number") from None
        world, rank = values["WORLD_SIZE"], values["RANK"]
        local_rank = rank if values["LOCAL_RANK"] is None else values["LOCAL_RANK"]
        local_world = world if values["LOCAL_WORLD_SIZE"] is None else values["LOCAL_WORLD_SIZE"]
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"environment variables RANK={rank} and WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
        if local_world < 1 or not 0 <= local_rank < local_world:
            raise ValueError(
                f"environment variables LOCAL_RANK={local_rank} and LOCAL_WORLD_SIZE={local_world}: "
                "need 0 <= LOCAL_RANK < LOCAL_WORLD_SIZE"
            )
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if world > 1 and not environ.get(name)]
        if missing:  # found out at the end of the job otherwise, when the processes meet
            raise ValueError(
                f"WORLD_SIZE={world} but {' and '.join(missing)} unset: launch with torchrun or accelerate launch, "
                "or set them as torch.distributed's env:// rendezvous needs"
            )
        return cls(rank, world, local_rank, local_world)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes the summary."""
        return self.rank == 0

    def take(self, items: Sequence[Item]) -> list[Item]:
        """This process's share of ``items``: every ``world_size``-th from ``rank`` on."""
        return list(items[self.rank :: self.world_size])

    def device(self, requested: str) -> str:
        """The device this process runs on: ``auto`` and ``cuda`` become the GPU of the local
        rank (shared round-robin when there are more processes than GPUs); a named device
        (``cuda:1``, ``cpu``) is kept as asked."""
        if not self.distributed or requested not in ("auto", "cuda"):
            return requested
        if torch.cuda.is_available() and torch.cuda.device_count():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    def cpu_threads(self) -> int:
        """Threads for a CPU process: its node's cores shared evenly among its processes.

        ``OMP_NUM_THREADS`` above 1 is respected; 1 is torchrun's default for several
        processes, which would leave most cores of a large machine idle.
        """
        chosen = os.environ.get("OMP_NUM_THREADS", "")
        if chosen.isdigit() and int(chosen) > 1:
            return int(chosen)
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, cores // self.local_world_size)

    def gather(self, record: Any) -> list[Any] | None:
        """Every process's ``record`` (picklable), in rank order, on rank 0; ``None`` elsewhere.

        All processes must call it once. A group of one needs no launcher.
        """
        if not self.distributed:
            return [record]
        import torch.distributed as dist

        started_here = not dist.is_initialized()
        if started_here:
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size, timeout=GATHER_TIMEOUT)
        try:
            records = [None] * self.world_size if self.main else None
            dist.gather_object(record, records, dst=0)
        finally:
            if started_here:
                dist.destroy_process_group()
        return records


def write_summary(folder: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` as ``folder/derain-summary.json`` (atomically) and return its path."""
    path = Path(folder) / SUMMARY_NAME
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


def configure(shard: Shard, device: str) -> str:
    """Give this process its device and, on the CPU, its share of threads; the device to use.

    A job of one process is left as it is.
    """
    if not shard.distributed:
        return device
    device = shard.device(device)
    if not device.startswith(("cuda", "mps")) and not (device == "auto" and torch.backends.mps.is_available()):
        torch.set_num_threads(shard.cpu_threads())
    return device

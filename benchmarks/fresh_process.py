"""Run one measurement in a fresh process, so each starts from a cold allocator and its own peak memory."""

from __future__ import annotations

import concurrent.futures
import multiprocessing


class ProcessDied(RuntimeError):
    """The measuring process was killed (usually by the kernel, out of memory)."""


def in_fresh_process(function, *args):
    """``function(*args)`` in a spawned process; raises :class:`ProcessDied` when that process
    dies instead of returning (``multiprocessing.Pool`` would wait for it forever)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(function, *args).result()
        except concurrent.futures.process.BrokenProcessPool:
            raise ProcessDied(f"{function.__name__}{args}: the process died (out of memory?)") from None

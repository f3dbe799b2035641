"""Process-wide CPU settings for programs that own their process, applied before torch starts.

Both are measured wins on the 2-core machines derain is developed on and neither changes a
single output value. ``import derain`` never applies them (a library must not retune its
host); the ``derain`` command and the benchmark scripts call :func:`tune` first, and so can
a program of yours::

    import derain.cpu
    derain.cpu.tune()  # before anything imports torch
    import derain

Set ``DERAIN_CPU_TUNING=0`` to leave the process as it was; a user's own
``OMP_WAIT_POLICY``, ``MALLOC_*`` or ``GLIBC_TUNABLES`` setting is always respected.
"""

import ctypes
import os
import sys

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1  # mallopt takes a C int


def tune() -> None:
    """Apply both settings unless the user opted out or chose their own."""
    if os.environ.get("DERAIN_CPU_TUNING", "1") == "0":
        return
    # Idle OpenMP threads sleep instead of spinning. On a CPU shared with other work, spinning
    # threads cost several times the run time (measured: 72 s/MP instead of 14 s/MP).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """Let glibc reuse freed feature maps instead of mapping fresh zeroed pages for each one.

    By default every tensor over 32 MB (a 48-channel 512x512 map is 50 MB) is its own mmap, so
    each layer pays page faults and zero-filling; a chain of element-wise ops on such maps runs
    3-4x faster once they come from the heap. The cost: freed memory stays with the process
    until it exits (peak memory is unchanged). Returns whether the setting was applied.
    """
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return all(
        mallopt(option, value) == 1
        for option, value in (
            (_M_MMAP_THRESHOLD, _INT_MAX),
            (_M_TRIM_THRESHOLD, _INT_MAX),
            (_M_TOP_PAD, 1 << 28),
        )
    )

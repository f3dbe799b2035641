"""Memory-aware tiles: how much memory a model needs per pixel, how much is free, and the tile that fits.

``Deraining(tile="auto")`` and ``derain run`` without ``--tile`` use this: the model's peak
memory per pixel is measured once (per model, device and precision) by a small probe
forward, the free memory is read before each image, and the tile is the largest square that
fits in a fraction of it, never smaller than the card's tile. An out-of-memory error during
an image halves the tile and retries it (:func:`is_out_of_memory`, :func:`halved_tile`).
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..registry import ModelCard
from .padding import padded_size

PROBE_SIDE = 64  # pixels; rounded up to the model's multiple and minimum size
MIN_TILE = 64  # the halving after out-of-memory errors stops here (or at the card's minimum size)
# Share of the free memory a tile batch may take: the rest absorbs the allocator's
# fragmentation, memory the probe cannot see (kernel workspaces) and other processes.
MEMORY_FRACTION = {"cuda": 0.7, "cpu": 0.5}
FULL_IMAGE_BYTES_PER_PIXEL = 7 * 4  # on the CPU: input, restored sum and weight sum, float32

class TileWarning(RuntimeWarning):
    """The tile ``"auto"`` chose ran out of memory and a smaller one is used."""


_measured: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, str], float]] = weakref.WeakKeyDictionary()


class _PeakTracker(TorchDispatchMode):
    """Peak bytes of the tensors created inside the mode that are alive at once.

    Works on any device (the CPU has no allocator statistics): every op's outputs are
    counted by storage, and a storage is released when the last tensor seen for it dies.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address: [bytes, tensors alive]
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor)
        return output

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0:
            return
        if key not in self.live:
            self.live[key] = [size, 0]
            self.current += size
            self.peak = max(self.peak, self.current)
        self.live[key][1] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]


def measure_bytes_per_pixel(
    model: nn.Module, card: ModelCard, device: torch.device, autocast: Callable | None = None
) -> float:
    """Peak activation bytes per input pixel of ``model`` on ``device``, from one probe forward.

    The probe is a square of :data:`PROBE_SIDE` pixels (rounded up to the card's size multiple
    and minimum size). On CUDA the allocator's peak is read; elsewhere the tensors alive at
    once are counted (:class:`_PeakTracker`). Memory is taken as linear in the pixels, true of
    convolutions and of attention across channels or in fixed windows.
    """
    side = padded_size(PROBE_SIDE, card.size_multiple, card.min_size)
    probe = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    context = autocast() if autocast is not None else torch.autocast(device.type, enabled=False)
    with torch.inference_mode(), context:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            model(probe)
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            tracker = _PeakTracker()
            with tracker:
                model(probe)
            peak = tracker.peak
    return max(peak, 1) / (side * side)


def bytes_per_pixel(
    model: nn.Module, card: ModelCard, device: torch.device, precision: str, autocast: Callable | None = None
) -> float:
    """:func:`measure_bytes_per_pixel`, measured once per model, device and precision."""
    per_model = _measured.setdefault(model, {})
    key = (str(device), precision)
    if key not in per_model:
        per_model[key] = measure_bytes_per_pixel(model, card, device, autocast)
    return per_model[key]


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device``, or ``None`` where it cannot be read.

    CUDA: the driver's free memory plus what torch's caching allocator holds unused. CPU (and
    Apple's unified memory): the RAM available without swapping, bounded by a cgroup (container)
    limit where one is set.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type not in ("cpu", "mps"):
        return None
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:  # psutil is a dependency, but a stripped install may lack it
        return None
    limit = _cgroup_free()
    return available if limit is None else min(available, limit)


def _cgroup_free() -> int | None:
    """Bytes left under the cgroup v2 memory limit of this process, ``None`` without a limit."""
    folder = Path("/sys/fs/cgroup")
    try:
        limit = (folder / "memory.max").read_text().strip()
        used = int((folder / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def choose_tile(
    available: int | None,
    per_pixel: float | None,
    card: ModelCard,
    *,
    batch_size: int = 1,
    image_pixels: int = 0,
    device_type: str = "cpu",
) -> int:
    """The tile for a batch in a share of ``available`` bytes.

    ``per_pixel`` is the model's peak bytes per pixel (:func:`bytes_per_pixel`). On a GPU: the
    largest square tile that fits, never below the card's tile (the smallest with which the
    card's overlap still blends well). On the CPU, where the full image's own buffers
    (``image_pixels``) come out of the same memory, the card's tile if it fits and a smaller one
    if memory is short: larger tiles only cost time there (a 1.2 MP photo in one tile took
    16-19 s/MP beside 9.5-11.6 s/MP in 256-pixel tiles on 2 cores). Results are multiples of
    the card's size multiple; ``None`` (memory or per-pixel need unknown) gives the card's tile.

    Example:
        >>> from derain.registry import unknown_card
        >>> import dataclasses
        >>> card = dataclasses.replace(unknown_card("net"), tile=256, size_multiple=8)
        >>> choose_tile(8 * 2**30, 20_000, card, device_type="cuda")   # 8 GiB free, 20 kB per pixel
        544
        >>> choose_tile(8 * 2**30, 20_000, card)                       # a CPU: the card's tile
        256
        >>> choose_tile(2**29, 20_000, card)                           # a CPU short of memory
        112
    """
    minimum = card.tile or MIN_TILE
    if available is None or per_pixel is None:
        return minimum
    budget = MEMORY_FRACTION.get(device_type, MEMORY_FRACTION["cpu"]) * available
    if device_type == "cpu":
        budget -= FULL_IMAGE_BYTES_PER_PIXEL * image_pixels
    if budget <= 0:
        return minimum
    side = int(math.sqrt(budget / (batch_size * per_pixel)))
    side -= side % card.size_multiple
    if device_type == "cpu":
        return max(MIN_TILE, min(minimum, side))
    return max(minimum, side)


def tile_floor(card: ModelCard, overlap: int) -> int:
    """The smallest tile the out-of-memory halving goes to: above the overlap, a size the model takes."""
    return padded_size(max(MIN_TILE, 2 * overlap), card.size_multiple, card.min_size)


def halved_tile(tile: int, card: ModelCard, overlap: int) -> int | None:
    """Half of ``tile`` rounded down to the size multiple, not below :func:`tile_floor`;
    ``None`` when ``tile`` is at the floor already."""
    floor = tile_floor(card, overlap)
    if tile <= floor:
        return None
    half = tile // 2
    return max(floor, half - half % card.size_multiple)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: CUDA's ``OutOfMemoryError``, or the CPU or MPS
    allocator's ``RuntimeError``."""
    if isinstance(err, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return True
    if not isinstance(err, RuntimeError):
        return False
    message = str(err).lower()
    return any(
        phrase in message
        for phrase in ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate")
    )


def release_cached_memory(device: torch.device) -> None:
    """Return the caching allocator's free blocks before a retry, so the smaller tile can use them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()

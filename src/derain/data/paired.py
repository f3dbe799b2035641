"""Paired rainy/clean image datasets for training and validation.

Training items are random patches, reflect-padded first when an image is smaller than the
patch, with one flip/rotation applied identically to both images. The randomness of an
item is a pure function of ``(seed, draw)``, where the draw number comes from
:class:`TrainingBatches`; so worker processes, several GPUs and a resumed run all see
exactly the patches an uninterrupted single-process run sees.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..imageio import ImageReadError, to_tensor
from .pairing import Pair, describe_files, pair_folders, read_pair



class BadPairsError(ValueError):
    """Training pairs that cannot be read or whose two images differ in size."""


def _flip_rot8(image: torch.Tensor, mode: int) -> torch.Tensor:
    """DRSformer/Restormer ``data_augmentation``: mode 0–7 = k·90° rotation, then a
    vertical flip when mode is odd (k = mode // 2)."""
    image = torch.rot90(image, mode // 2, dims=(-2, -1))
    return torch.flip(image, dims=(-2,)) if mode % 2 else image


def _flip_rot9(image: torch.Tensor, mode: int) -> torch.Tensor:
    """DAIT ``DataLoaderTrain``: 0 and 8 identity, 1 vertical flip, 2 horizontal flip,
    3/4/5 rotation by 90/180/270°, 6/7 rotation of the vertically/horizontally flipped image."""
    if mode in (1, 6):
        image = torch.flip(image, dims=(-2,))
    if mode in (2, 7):
        image = torch.flip(image, dims=(-1,))
    turns = {3: 1, 4: 2, 5: 3, 6: 1, 7: 1}.get(mode, 0)
    return torch.rot90(image, turns, dims=(-2, -1))


def _flips(image: torch.Tensor, mode: int) -> torch.Tensor:
    """DDSAformer: bit 0 of ``mode`` flips vertically, bit 1 horizontally."""
    dims = [d for bit, d in ((1, -2), (2, -1)) if mode & bit]
    return torch.flip(image, dims=dims) if dims else image


# ``data.augment`` of a training config -> (number of modes drawn uniformly, the transform of a
# mode); the config's allowed values are these keys
AUGMENTATIONS: dict[str, tuple[int, Callable[[torch.Tensor, int], torch.Tensor]]] = {
    "flip_rot8": (8, _flip_rot8),
    "flip_rot9": (9, _flip_rot9),
    "flips": (4, _flips),
    "none": (1, lambda image, mode: image),
}


@dataclass(frozen=True)
class _Draw:
    top: int
    left: int
    transform: tuple[str, int]


class PairedImageDataset(Dataset):
    """Rainy/clean pairs as ``{"rainy", "clean"}`` float RGB (3, H, W) tensors in [0, 1] and ``"name"``.

    ``dataset[i]`` is pair ``i``, centre-cropped to ``center_crop`` if given (validation).
    ``dataset[(i, draw)]`` is a random ``patch_size`` patch of pair ``i`` with the
    ``augment`` transform (see ``AUGMENTATIONS``), drawn from ``(seed, draw)`` (training).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        patch_size: int | None = None,
        augment: str = "none",
        center_crop: int | None = None,
        seed: int = 0,
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; known: {', '.join(AUGMENTATIONS)}")
        if not pairs:
            raise ValueError("no image pairs given")
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.augment = augment
        self.center_crop = center_crop
        self.seed = seed

    @classmethod
    def from_folders(
        cls,
        input_dir: str | Path | Sequence[str | Path],
        target_dir: str | Path | Sequence[str | Path],
        *,
        by: str = "stem",
        skip_bad: bool = False,
        workers: int = 4,
        **kwargs,
    ) -> "PairedImageDataset":
        """Pair two folders, or lists of folders (:func:`pair_folder_lists`), and read every pair once.

        Unreadable images and pairs of different sizes raise :class:`BadPairsError` naming
        them, or with ``skip_bad`` are dropped with a warning, before any training starts.
        """
        pairs = pair_folder_lists(input_dir, target_dir, by=by)
        return cls(check_pairs(pairs, skip_bad=skip_bad, workers=workers), **kwargs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, draw = key if isinstance(key, tuple) else (key, None)
        pair = self.pairs[index]
        rainy, clean = load_pair(pair)
        if draw is None:
            if self.center_crop is not None:
                rainy, clean = (_center_crop(x, self.center_crop) for x in (rainy, clean))
        else:
            if self.patch_size is None:
                raise ValueError("random patches need a patch_size")
            rng = np.random.default_rng([self.seed, draw])
            rainy, clean = (_pad_to(x, self.patch_size) for x in (rainy, clean))
            choice = self._draw(rng, rainy.shape[1], rainy.shape[2])
            rainy, clean = (self._apply(x, choice) for x in (rainy, clean))
        return {"rainy": rainy, "clean": clean, "name": pair.name}

    def _draw(self, rng: np.random.Generator, height: int, width: int) -> _Draw:
        top = int(rng.integers(0, height - self.patch_size + 1))
        left = int(rng.integers(0, width - self.patch_size + 1))
        modes, _ = AUGMENTATIONS[self.augment]
        return _Draw(top, left, (self.augment, int(rng.integers(0, modes))))

    def _apply(self, image: torch.Tensor, choice: _Draw) -> torch.Tensor:
        p = self.patch_size
        patch = image[:, choice.top : choice.top + p, choice.left : choice.left + p]
        kind, mode = choice.transform
        return AUGMENTATIONS[kind][1](patch, mode).contiguous()


def pair_folder_lists(
    input_dirs: str | Path | Sequence[str | Path], target_dirs: str | Path | Sequence[str | Path], *, by: str = "stem"
) -> list[Pair]:
    """Pairs of every ``(input_dirs[k], target_dirs[k])`` (:func:`derain.data.pair_folders`), concatenated.

    One folder each gives that folder's pairs unchanged. With several, each name is prefixed with
    its input folder relative to the folders' common parent (``light/input/Aqua_0``), so that
    photos rained on with several presets under the same file name stay distinct.
    """
    inputs = [input_dirs] if isinstance(input_dirs, (str, Path)) else list(input_dirs)
    targets = [target_dirs] if isinstance(target_dirs, (str, Path)) else list(target_dirs)
    if len(inputs) != len(targets) or not inputs:
        raise ValueError(f"{len(inputs)} input folders but {len(targets)} target folders: give one target per input")
    if len(inputs) == 1:
        return pair_folders(inputs[0], targets[0], by=by)
    resolved = [Path(folder).resolve() for folder in inputs]
    repeated = sorted({str(folder) for folder in resolved if resolved.count(folder) > 1})
    if repeated:
        raise ValueError(f"input folder listed more than once: {', '.join(repeated)}")
    common = Path(os.path.commonpath(resolved))
    pairs = []
    for folder, input_dir, target_dir in zip(resolved, inputs, targets):
        prefix = folder.relative_to(common).as_posix()
        pairs += [replace(pair, name=f"{prefix}/{pair.name}") for pair in pair_folders(input_dir, target_dir, by=by)]
    return pairs


def load_pair(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a pair as two float RGB (3, H, W) tensors, as :func:`~derain.data.pairing.read_pair`
    reads it (DID-Data side-by-side files are split; an odd width is refused)."""
    rainy, clean = read_pair(pair)
    if rainy.shape[:2] != clean.shape[:2]:
        raise BadPairsError(
            f"{pair.input} is {rainy.shape[1]}×{rainy.shape[0]} but its target {pair.target} is "
            f"{clean.shape[1]}×{clean.shape[0]}"
        )
    return to_tensor(rainy)[0][0], to_tensor(clean)[0][0]


def check_pairs(pairs: Sequence[Pair], *, skip_bad: bool = False, workers: int = 4) -> list[Pair]:
    """Read every pair once; raise naming the bad ones, or drop them with a warning."""

    def problem(pair: Pair) -> str | None:
        try:
            load_pair(pair)
        except (ImageReadError, BadPairsError) as err:
            return str(err)
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(problem, pairs))
    bad = [(pair, reason) for pair, reason in zip(pairs, problems) if reason is not None]
    if not bad:
        return list(pairs)
    listing = "\n".join(f"  {reason}" for _, reason in bad[:20])
    more = f"\n  (and {len(bad) - 20} more)" if len(bad) > 20 else ""
    files = describe_files([pair.input for pair, _ in bad])
    if not skip_bad:
        raise BadPairsError(
            f"{len(bad)} of {len(pairs)} training pairs cannot be used ({files}); fix or remove them, "
            f"or set data.skip_bad: true to skip them:\n{listing}{more}"
        )
    warnings.warn(f"skipping {len(bad)} of {len(pairs)} unusable pairs:\n{listing}{more}", stacklevel=2)
    good = [pair for pair, reason in zip(pairs, problems) if reason is None]
    if not good:
        raise BadPairsError(f"none of the {len(pairs)} training pairs can be read:\n{listing}{more}")
    return good


def _pad_to(image: torch.Tensor, size: int) -> torch.Tensor:
    """Pad bottom/right by mirroring (OpenCV ``BORDER_REFLECT``, as BasicSR) up to ``size``."""
    pad_h, pad_w = max(0, size - image.shape[1]), max(0, size - image.shape[2])
    if not (pad_h or pad_w):
        return image
    padded = np.pad(image.numpy(), ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
    return torch.from_numpy(padded)


def _center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[1:]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[:, top : top + size, left : left + size]


class TrainingBatches(Sampler[list[tuple[int, int]]]):
    """This process's micro-batches of ``(index, draw)`` keys, from ``start_step`` to ``total_steps``.

    Each epoch is a permutation seeded by ``(seed, epoch)``; optimizer step ``s`` uses the
    ``global_batch`` items at positions ``s·global_batch …`` of its epoch (an incomplete last
    batch is dropped, as ``drop_last``). Process ``rank`` of ``world`` takes its equal slice
    of that global batch and yields it as micro-batches of ``device_batch``. The keys
    depend on the step only, so resuming or changing the number of processes does not
    change what is trained on.
    """

    def __init__(
        self,
        num_items: int,
        *,
        global_batch: int,
        device_batch: int,
        total_steps: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_step: int = 0,
    ) -> None:
        if global_batch % (device_batch * world):
            raise ValueError(
                f"global batch {global_batch} is not a multiple of {device_batch} per device × {world} processes"
            )
        if num_items < global_batch:
            raise ValueError(f"{num_items} training pairs are fewer than one global batch of {global_batch}")
        self.num_items = num_items
        self.global_batch = global_batch
        self.device_batch = device_batch
        self.total_steps = total_steps
        self.seed = seed
        self.rank = rank
        self.world = world
        self.start_step = start_step
        self.steps_per_epoch = num_items // global_batch
        self.accumulation = global_batch // (device_batch * world)

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.global_batch // self.world
        order, order_epoch = None, -1
        for step in range(self.start_step, self.total_steps):
            epoch, within = divmod(step, self.steps_per_epoch)
            if epoch != order_epoch:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order, order_epoch = torch.randperm(self.num_items, generator=generator).tolist(), epoch
            first = within * self.global_batch + self.rank * share
            for micro in range(self.accumulation):
                start = first + micro * self.device_batch
                positions = range(start, start + self.device_batch)
                yield [(order[p], epoch * self.num_items + p) for p in positions]

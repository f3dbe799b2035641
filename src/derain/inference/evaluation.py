"""``derain.evaluate``: run a model over rainy/clean pairs and score it as the papers score their tables.

One code path for training validation, ``derain eval --model``, and the benchmarks: each rainy
image is restored as ``derain run`` restores it (padding, tiles or the official protocol),
quantised as ``derain run`` writes it (the input's integer type, rounded), and scored with the
MATLAB-exact PSNR/SSIM of :func:`derain.metrics.psnr_ssim_matlab` and, when asked, NIQE and
BRISQUE of the restored image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.layouts import read_layout
from ..data.pairing import Pair, read_pair
from ..imageio import ImageInfo, ImageReadError, from_tensor, to_uint8
from ..metrics import brisque, niqe, psnr_ssim_matlab
from ..metrics.folders import METRICS, Evaluation
from ..metrics.matlab import PROTOCOLS
from .api import AUTO, Deraining

Image = Union[np.ndarray, torch.Tensor]  # uint8/uint16 H×W×3 arrays, or float (3, H, W) in [0, 1]
Pairs = Union[str, Path, Iterable[Pair], Iterable["tuple[str, Image, Image]"]]
_AS_UINT8 = ImageInfo(dtype=np.dtype(np.uint8), grayscale=False)


def evaluate(
    model: nn.Module | Deraining,
    pairs: Pairs,
    *,
    metrics: tuple[str, ...] = ("psnr", "ssim"),
    protocol: str = "rain100",
    tile: int | str | None = AUTO,
    overlap: int | None = None,
    inference: str = "blended",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Evaluation:
    """Scores of ``model`` on ``pairs``, one row per pair (``Evaluation.summary()`` gives the means).

    Args:
        model: a module (left in the training mode it had) or a ready :class:`Deraining`.
        pairs: a dataset folder in any published layout (:func:`derain.data.read_layout`; every
            split), :class:`~derain.data.pairing.Pair` objects, or ``(name, rainy, clean)``
            tuples of arrays or float (3, H, W) tensors; restored tensors are rounded to 8 bits.
        metrics: some of ``psnr``, ``ssim``, ``niqe``, ``brisque``.
        protocol: the paper protocol of PSNR/SSIM (:data:`derain.metrics.PROTOCOLS`).
        tile, overlap, inference: as ``tile``, ``overlap`` and ``protocol`` of :class:`Deraining`.
        device: where the model runs; ``None``: where its parameters are.

    Pairs that cannot be read, or whose sizes differ, are recorded in ``failures``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {METRICS}")
    if isinstance(model, Deraining):
        derainer, module = model, model.model
    else:
        module = model
        if device is None:
            device = next(module.parameters()).device
        derainer = None
    was_training = module.training
    if derainer is None:
        derainer = Deraining(module, tile=tile, overlap=overlap, device=device, protocol=inference)
    evaluation = Evaluation(tuple(metrics))
    try:
        for item in tqdm(_pair_list(pairs), disable=not progress, unit="img"):
            name = item.name if isinstance(item, Pair) else item[0]
            try:
                rainy, clean = read_pair(item) if isinstance(item, Pair) else item[1:]
                restored = _as_array(derainer(rainy))
                evaluation.rows.append(_score(name, restored, _as_array(clean), protocol, metrics))
            except (ImageReadError, ValueError, OSError) as err:
                evaluation.failures.append((name, str(err)))
    finally:
        module.train(was_training)
    return evaluation


def _pair_list(pairs: Pairs) -> Iterable:
    """The pairs of a dataset folder (named ``split/name`` where it has several), or ``pairs`` as given."""
    if not isinstance(pairs, (str, Path)):
        return pairs
    _, splits = read_layout(pairs)
    return [
        dataclasses.replace(pair, name=f"{split}/{pair.name}" if split else pair.name)
        for split in sorted(splits)
        for pair in splits[split]
    ]


def _as_array(image: Image) -> np.ndarray:
    """Tensors as the 8-bit PNG ``derain run`` would write (clamped, rounded); arrays as they are."""
    return from_tensor(image, _AS_UINT8) if isinstance(image, torch.Tensor) else image


def _score(name: str, restored: np.ndarray, clean: np.ndarray, protocol: str, metrics: tuple[str, ...]) -> dict:
    if restored.shape[:2] != clean.shape[:2]:
        raise ValueError(f"{name}: sizes differ: restored {restored.shape[:2]}, clean {clean.shape[:2]}")
    restored, clean = to_uint8(restored), to_uint8(clean)  # the MATLAB protocols fix the peak at 255
    row: dict = {"name": name}
    if "psnr" in metrics or "ssim" in metrics:
        row["psnr"], row["ssim"] = psnr_ssim_matlab(restored, clean, protocol)
    if "niqe" in metrics:
        row["niqe"] = niqe(restored)
    if "brisque" in metrics:
        row["brisque"] = brisque(restored)
    return {m: row[m] for m in ("name", *metrics)}

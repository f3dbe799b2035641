"""The high-level call: derain a NumPy array, a PIL image or a tensor with any model."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..checkpoint import load_checkpoint
from ..factory import list_models, model_card
from ..imageio import array_from_pil, from_tensor, to_tensor
from ..pretrained import DEFAULT_TAG, load_pretrained
from ..registry import ModelCard, card_of, check_working_size, unknown_card
from . import memory
from .backends import forward_of, resolve_precision
from .padding import padded_size
from .protocols import OFFICIAL_PROTOCOLS
from .tiling import run_padded, tiled_forward
from .working_size import remove_coarse_rain, shrunk_size

PROTOCOLS = ("blended", "official")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image, torch.Tensor)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


AUTO = "auto"  # tile: as large as the free memory allows, at least the model card's (ModelCard.tile)


def inference_card(model: nn.Module) -> ModelCard:
    """The card inference acts on: ``model``'s, or whole images of any size for a module derain does not know."""
    return card_of(model) or unknown_card(type(model).__name__)


def is_batch_independent(model: nn.Module, card: ModelCard) -> bool:
    """Whether each image's output ignores the other images of its batch, so batching is safe.

    The card answers for the architecture; a model whose layers carry their own
    ``batch_independent`` flag (CPRAformer built with ``batch_independent=True``) answers
    for itself.
    """
    flags = {m.batch_independent for m in model.modules() if isinstance(getattr(m, "batch_independent", None), bool)}
    return flags == {True} if flags else card.batch_independent


class Deraining:
    """A model kept loaded, ready to derain many images with the same settings.

    Args:
        model: a module, or a registered name. With only ``weights``, the architecture is
            detected; with neither, derain's default pretrained model is used.
        weights: a checkpoint file, loaded with :func:`derain.load_checkpoint`.
        tile: tile side in pixels, honoured exactly; ``None`` for whole images (memory grows
            with the image); or ``"auto"``: the largest tile the free memory holds (measured
            per image, :mod:`derain.inference.memory`), at least the card's (256 for every
            registered model), halved and retried on an out-of-memory error; whole images
            under the official protocol, as the official scripts run them.
        overlap: pixels shared by neighbouring tiles, blended linearly; ``None``: the card's.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``...; tiles run there, full images stay on the CPU.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast); bf16 on a CPU without
            bfloat16 instructions runs fp32, with a warning (:func:`~.backends.resolve_precision`).
        batch_size: images (or tiles of one large image) per forward pass; only a model
            whose batch items are independent (:func:`is_batch_independent`) is given more
            than one, so the output never depends on it.
        protocol: ``"blended"`` (derain's padding and blended tiles) or ``"official"``
            (the paper's test procedure, see :mod:`derain.inference.protocols`).
        progress: a progress bar over the tiles of each image: ``None`` shows it for images
            of many tiles when stderr is a terminal, ``True`` always, ``False`` never.
        backend: ``"torch"`` or ``"onnxruntime"`` (the model exported to ONNX once, here, and
            run by ONNX Runtime; fp32 only; needs the ``export`` extra).
        compile: run the torch backend through ``torch.compile``; it compiles on the first
            tile of each new shape (:class:`~.backends.CompiledForward`).
        working_size: on images whose short side is larger, the rain the model finds on a copy
            shrunk to this short side is enlarged and subtracted first, then the model derains
            the result at full size (:mod:`~.working_size`); ``None``: one pass at full size;
            ``"auto"``: the card's (derain's pretrained models: the scale they were trained at;
            architectures and official weights: ``None``), ``None`` under the official protocol.

    Example:
        >>> derainer = Deraining("drsformer", weights="drsformer_rain200h.pth", tile=512)  # doctest: +SKIP
        >>> restored = derainer(numpy_image)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module | str | None = None,
        weights: str | Path | None = None,
        *,
        tile: int | str | None = AUTO,
        overlap: int | None = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        batch_size: int = 1,
        protocol: str = "blended",
        progress: bool | None = None,
        backend: str = "torch",
        compile: bool = False,
        working_size: int | str | None = AUTO,
    ):
        if weights is not None:
            model = load_checkpoint(weights, model)
        elif model is None or isinstance(model, str):
            if model is not None:
                model_card(model)  # an unknown name fails here with the list of known ones
            model = load_pretrained(DEFAULT_TAG, architecture=model)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.card = card = inference_card(model)
        if precision == "fp16" and not card.half_precision:
            raise ValueError(
                f"{card.name} is not reliable in fp16 (its card says half_precision=False); use bf16 or fp32"
            )
        if protocol == "official" and card.official_protocol is None:
            known = [name for name in list_models() if model_card(name).official_protocol]
            raise ValueError(f"no official test protocol is known for {card.name}; known for: {', '.join(known)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(tile, str) and tile != AUTO:
            raise ValueError(f"tile must be a number of pixels, None or {AUTO!r}, got {tile!r}")
        if working_size == AUTO:
            working_size = None if protocol == "official" else card.working_size
        self.working_size = check_working_size(working_size)
        if self.working_size is not None and protocol == "official":
            raise ValueError("the official protocol runs whole images as the paper did; it takes no working size")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        # What runs each padded batch; self.model stays the eager module (memory probes, users).
        self.forward = forward_of(
            self.model, card, self.device, backend=backend, compile=compile, precision=self.precision
        )
        # A compiled forward compiles once per shape: "auto" keeps the tile it chose first.
        self._pin_tile = compile
        self._pinned_tile: int | None = None
        # "auto" under the official protocol is the official script's default: whole images;
        # a module without a card has no tile advice, so it runs whole images as before.
        if tile == AUTO and (protocol == "official" or card.tile is None):
            tile = None
        self.tile = tile
        self.last_tile: int | None = None  # the tile "auto" chose for the latest image
        self._tile_cap: int | None = None  # after an out-of-memory error: never above this
        self._warned = False
        self.progress = progress
        self.overlap = card.overlap if overlap is None else overlap
        self.protocol = protocol
        # Batching images or tiles of a model whose batch items interact would change its output.
        self.batch_size = batch_size if is_batch_independent(self.model, card) else 1

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    @torch.inference_mode()
    def restore(self, rainy: torch.Tensor) -> torch.Tensor:
        """Derain a float RGB batch (N, 3, H, W) in [0, 1]; the result is float32, where ``rainy`` is."""
        if rainy.dim() != 4 or rainy.shape[1] != 3:
            raise ValueError(f"expected an RGB batch (N, 3, H, W), got shape {tuple(rainy.shape)}")
        x = rainy.float()
        shrunk = shrunk_size(*x.shape[-2:], self.working_size)
        with self._autocast():
            if shrunk is not None:
                x = remove_coarse_rain(self._restore, x.cpu(), shrunk)
            restored = self._restore(x)
        return restored.float().clamp_(0, 1).to(rainy.device)

    def _restore(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x`` at its own resolution, tiled as configured, on ``x``'s device."""
        if self.protocol == "official":
            protocol = OFFICIAL_PROTOCOLS[self.card.official_protocol]
            restored = protocol(self.forward, x.to(self.device), self.tile, self.overlap)
        elif self.tile is None:
            restored = run_padded(self.forward, x.to(self.device), self.card.size_multiple, min_size=self.card.min_size)
        elif self.tile == AUTO:
            restored = self._restore_memory_aware(x.cpu())
        elif max(x.shape[-2:]) <= self.tile:
            # One tile covers each image, and blending one tile is the identity: batch the
            # images themselves, batch_size at a time (tiled_forward batches within an image).
            restored = torch.cat([
                run_padded(
                    self.forward, chunk.to(self.device), self.card.size_multiple, min_size=self.card.min_size
                ).to(x.device, x.dtype)
                for chunk in x.cpu().split(self.batch_size)
            ])
        else:
            restored = self._tiled(x.cpu(), self.tile)
        return restored.to(x.device)

    def _tiled(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        return tiled_forward(
            self.forward,
            x,
            tile,
            self.overlap,
            self.card.size_multiple,
            min_size=self.card.min_size,
            batch_size=self.batch_size,
            device=self.device,
            progress=self.progress,
        )

    def auto_tile(self, x: torch.Tensor) -> int:
        """The tile ``"auto"`` uses for ``x`` (N, 3, H, W): what the free memory holds now
        (compiled: held for the first image), no larger than the image or than a tile that ran
        out of memory before."""
        tile = self._pinned_tile or self._memory_tile(x)
        if self._pin_tile:
            self._pinned_tile = tile
        # A tile beyond the image is the whole image: start halving from there.
        whole = padded_size(max(x.shape[-2:]), self.card.size_multiple, self.card.min_size)
        tile = min(tile, max(whole, self.card.tile))
        return tile if self._tile_cap is None else min(tile, self._tile_cap)

    def _memory_tile(self, x: torch.Tensor) -> int:
        try:
            per_pixel = memory.bytes_per_pixel(self.model, self.card, self.device, self.precision, self._autocast)
        except RuntimeError:  # the probe itself ran out of memory (or cannot be traced): the card's tile
            memory.release_cached_memory(self.device)
            per_pixel = None
        return memory.choose_tile(
            memory.available_memory(self.device),
            per_pixel,
            self.card,
            batch_size=self.batch_size,
            image_pixels=x.shape[0] * x.shape[-2] * x.shape[-1],
            device_type=self.device.type,
        )

    def _restore_memory_aware(self, x: torch.Tensor) -> torch.Tensor:
        """Tiles of :meth:`auto_tile`; on an out-of-memory error, half the tile and the same image again."""
        tile = self.auto_tile(x)
        while True:
            self.last_tile = tile
            try:
                return self._tiled(x, tile)
            except RuntimeError as err:
                smaller = memory.halved_tile(tile, self.card, self.overlap) if memory.is_out_of_memory(err) else None
                if smaller is None:
                    raise
            memory.release_cached_memory(self.device)
            if not self._warned:
                warnings.warn(
                    f"{self.card.name}: out of memory on {self.device} with {tile}-pixel tiles; "
                    f"retrying with {smaller} (pass a tile to fix the size)",
                    memory.TileWarning,
                    stacklevel=4,
                )
                self._warned = True
            self._tile_cap = tile = smaller

    def __call__(self, image: ImageLike) -> ImageLike:
        """Derain one image and return the same kind: array, PIL image or tensor.

        Arrays: H×W, H×W×3 or H×W×4, uint8/uint16/float (dtype kept, alpha untouched,
        grayscale stays grayscale). PIL images: any mode (palette/CMYK come back RGB).
        Tensors: float (3, H, W) or (N, 3, H, W) in [0, 1], or one channel for grayscale.
        """
        if isinstance(image, torch.Tensor):
            return self._restore_tensor(image)
        if isinstance(image, Image.Image):
            return Image.fromarray(self(array_from_pil(image)))
        if isinstance(image, np.ndarray):
            tensor, info = to_tensor(image)
            return from_tensor(self.restore(tensor), info)
        raise TypeError(f"expected a NumPy array, PIL image or tensor, got {type(image).__name__}")

    def derain_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Derain same-sized image arrays (same shape and dtype), ``batch_size`` per forward pass.

        Each result equals ``self(image)`` for a batch-independent model (up to the last bit
        of floating-point rounding where the backend picks another kernel for a batch).
        """
        if not images:
            return []
        if len({(image.shape, image.dtype) for image in images}) > 1:
            shapes = sorted({f"{image.shape} {image.dtype}" for image in images})
            raise ValueError(f"derain_batch needs images of one shape and dtype, got {', '.join(shapes)}")
        converted = [to_tensor(image) for image in images]
        restored = []
        for first in range(0, len(converted), self.batch_size):
            chunk = converted[first : first + self.batch_size]
            outputs = self.restore(torch.cat([tensor for tensor, _ in chunk]))
            restored += [from_tensor(output, info) for output, (_, info) in zip(outputs, chunk)]
        return restored

    def _restore_tensor(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1], got {image.dtype}")
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        if batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(f"expected (3, H, W) or (N, 3, H, W) (or 1 channel), got {tuple(image.shape)}")
        grayscale = batch.shape[1] == 1
        restored = self.restore(batch.expand(-1, 3, -1, -1) if grayscale else batch)
        restored = restored.mean(1, keepdim=True) if grayscale else restored
        return restored.reshape(image.shape).to(image.dtype)


def derain(
    image: ImageLike,
    model: nn.Module | str | None = None,
    weights: str | Path | None = None,
    *,
    tile: int | str | None = AUTO,
    overlap: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    protocol: str = "blended",
    progress: bool | None = None,
    backend: str = "torch",
    compile: bool = False,
    working_size: int | str | None = AUTO,
) -> ImageLike:
    """Derain one image (array, PIL image or tensor) and return the same kind.

    A one-off call: it loads the model each time; use :class:`Deraining` for many images.
    See :class:`Deraining` for the arguments.
    """
    return Deraining(
        model, weights, tile=tile, overlap=overlap, device=device, precision=precision, protocol=protocol,
        progress=progress, backend=backend, compile=compile, working_size=working_size,
    )(image)

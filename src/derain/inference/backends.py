"""How a model's forward pass runs: eager PyTorch, ``torch.compile``, or ONNX Runtime.

:class:`~derain.inference.Deraining` keeps padding, tiling and batching, and hands each
padded batch (N, 3, H, W) to the callable :func:`forward_of` returns, so every backend sees
exactly the tensors eager PyTorch would. Compiled and ONNX Runtime forwards are faster on
CPUs once built; building them costs time up front (see docs/performance.md).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..registry import ModelCard
from .padding import padded_size
from .tiling import first_output

BACKENDS = ("torch", "onnxruntime")
MAX_DYNAMIC_SIZE = 8192  # pixels: the largest side an ONNX graph with dynamic height and width takes
EXPORT_SIDE = 64  # pixels of the example input an export traces (rounded to the model's sizes)
Forward = Callable[[torch.Tensor], "torch.Tensor | Sequence[torch.Tensor]"]


class BackendWarning(RuntimeWarning):
    """The precision or device asked for cannot run as asked here, and another is used."""


class RestoredImage(nn.Module):
    """Wraps a model so that it returns only the full-resolution restoration."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rainy: torch.Tensor) -> torch.Tensor:
        return first_output(self.model(rainy))


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where oneDNN says so."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision``, or fp32 with a :class:`BackendWarning` for bf16 on a CPU without
    bfloat16 instructions: there PyTorch emulates it, slower than fp32 and less exact."""
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        warnings.warn(
            "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), where bf16 is slower than fp32: "
            "running fp32",
            BackendWarning,
            stacklevel=3,
        )
        return "fp32"
    return precision


def onnx_program(
    model: nn.Module, card: ModelCard, side: int | None = None, dynamic: bool = True, shape: tuple[int, ...] | None = None
):
    """``model``'s full-resolution output as a ``torch.onnx.ONNXProgram`` (dynamo exporter),
    traced on a random ``side``-pixel square (default :data:`EXPORT_SIDE`, rounded to the card's sizes).

    With ``dynamic``, batch, height and width are dynamic, height and width in multiples of
    the card's size multiple from its minimum size up to :data:`MAX_DYNAMIC_SIZE`; without,
    the graph takes one ``side``-pixel image, or batches of exactly ``shape`` (N, 3, H, W).
    """
    side = side or padded_size(EXPORT_SIDE, card.size_multiple, card.min_size)
    parameter = next(model.parameters(), None)
    # A batch of 2 when dynamic: an example batch of 1 would fix the graph's batch to 1.
    example_shape = shape if shape is not None and not dynamic else (2 if dynamic else 1, 3, side, side)
    example = torch.rand(example_shape, generator=torch.Generator().manual_seed(0)).to(
        parameter.device if parameter is not None else "cpu"
    )
    dynamic_shapes = None
    if dynamic:
        multiple = card.size_multiple
        smallest = padded_size(1, multiple, card.min_size) // multiple
        steps = MAX_DYNAMIC_SIZE // multiple
        height = multiple * torch.export.Dim("height_steps", min=smallest, max=steps)
        width = multiple * torch.export.Dim("width_steps", min=smallest, max=steps)
        dynamic_shapes = {"rainy": {0: torch.export.Dim("batch", min=1, max=1024), 2: height, 3: width}}
    return torch.onnx.export(
        RestoredImage(model).eval(),
        (example,),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=["rainy"],
        output_names=["restored"],
        verbose=False,
    )


def import_onnxruntime():
    """The ``onnxruntime`` module, or a ``ValueError`` that names the extra which installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError('ONNX Runtime is not installed: pip install "derain[export]"') from None
    return onnxruntime


class OnnxRuntimeForward:
    """``model`` exported to ONNX in memory and run by an ``onnxruntime.InferenceSession``.

    The graph takes any batch and any height and width the model takes (dynamic shapes), so
    one export serves every tile. A model the exporter cannot trace with symbolic sizes (DMSR:
    its FFTs) gets one graph per tile shape instead, exported on first use. The CUDA provider
    runs it on a CUDA ``device`` where the installed onnxruntime has it, the CPU provider
    otherwise, with as many threads as torch.
    """

    def __init__(self, model: nn.Module, card: ModelCard, device: torch.device):
        self.onnxruntime = import_onnxruntime()
        self.model, self.card = model, card
        self.providers: list = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" in self.onnxruntime.get_available_providers():
                self.providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
            else:
                warnings.warn(
                    "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu): running on the CPU",
                    BackendWarning,
                    stacklevel=3,
                )
        self.sessions: dict[tuple[int, ...] | None, Any] = {}  # None: the dynamic graph
        try:
            self.sessions[None] = self.session_of(dynamic=True)
        except torch.onnx.OnnxExporterError:
            pass

    def session_of(self, dynamic: bool, shape: tuple[int, ...] | None = None):
        with warnings.catch_warnings():  # the exporter's notes are for the ones who write models
            warnings.simplefilter("ignore")
            proto = onnx_program(self.model, self.card, dynamic=dynamic, shape=shape).model_proto
        options = self.onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        return self.onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=self.providers)

    def __call__(self, rainy: torch.Tensor) -> torch.Tensor:
        shape = tuple(rainy.shape)
        session = self.sessions.get(None) or self.sessions.get(shape)
        if session is None:
            session = self.sessions[shape] = self.session_of(dynamic=False, shape=shape)
        restored = session.run(None, {"rainy": rainy.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(restored).to(rainy.device)


class CompiledForward:
    """``model`` compiled by ``torch.compile`` (inductor) for static shapes.

    Tiles of one image share a shape, so a run compiles once per tile shape (images smaller
    than the tile, or a last batch with fewer tiles, add one each). On the CPU the weights
    are frozen into the graph (``torch._inductor.config.freezing``), which lets inductor fold
    norms and element-wise ops into the convolutions; later changes to the weights are not
    seen. Compilation happens on the first call of each shape (and autocast state).
    """

    def __init__(self, model: nn.Module, device: torch.device):
        from torch._inductor import config  # torch.compile's own import, here not at derain's import

        self.compiled = torch.compile(model, dynamic=False)
        self.frozen = config.patch(freezing=True) if device.type == "cpu" else contextlib.nullcontext()

    def __call__(self, rainy: torch.Tensor):
        with self.frozen, torch.no_grad():
            return self.compiled(rainy)


def forward_of(
    model: nn.Module,
    card: ModelCard,
    device: torch.device,
    *,
    backend: str = "torch",
    compile: bool = False,
    precision: str = "fp32",
) -> Forward:
    """The callable that runs ``model`` (already on ``device``, in eval mode) on padded batches:
    ``model`` itself for eager PyTorch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime":
        if compile:
            raise ValueError("compile applies to the torch backend; onnxruntime optimises its graph itself")
        if precision != "fp32":
            raise ValueError(f"the onnxruntime backend runs fp32 only, got precision {precision!r}")
        return OnnxRuntimeForward(model, card, device)
    return CompiledForward(model, device) if compile else model

"""``derain export``: a checkpoint to ONNX, TorchScript or a Hub folder, checked against eager PyTorch.

ONNX needs the optional ``export`` extra (onnx, onnxscript, onnxruntime). The exported
graph takes a float RGB batch (N, 3, H, W) in [0, 1] and returns the full-resolution
restored image only (DMSR's 1/2 and 1/4 outputs are training aids). The batch is dynamic,
and so are height and width, in multiples of the model's size multiple (``--static``: fixed). ``--format hub`` writes a
``save_pretrained``-style folder (:mod:`derain.hub`) that ``huggingface-cli upload`` publishes
and ``derain.load_checkpoint("hf-hub:owner/name")`` reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from .. import hub, pretrained
from ..checkpoint import CheckpointError, _config_for, load_checkpoint, read_state_dict
from ..inference import first_output, inference_card
from ..inference.backends import RestoredImage, import_onnxruntime, onnx_program
from ..registry import ModelCard
from ..factory import list_models, model_card

ONNX_TOLERANCE = 1e-4
TORCHSCRIPT_TOLERANCE = 1e-5


def export_onnx(model: nn.Module, path: Path, card: ModelCard, side: int, dynamic: bool = True) -> Path:
    """Write ``model`` as ONNX (:func:`derain.inference.backends.onnx_program`)."""
    onnx_program(model, card, side, dynamic).save(str(path))
    return path


def export_torchscript(model: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """Write ``model`` traced to TorchScript (shapes computed from the input stay dynamic)."""
    with torch.no_grad():
        traced = torch.jit.trace(RestoredImage(model).eval(), example)
    traced.save(str(path))
    return path


def parity_error(model: nn.Module, path: Path, fmt: str, rainy: torch.Tensor) -> float:
    """Largest absolute difference between the exported file and eager PyTorch on ``rainy``."""
    with torch.no_grad():
        expected = first_output(model(rainy))
        if fmt == "onnx":
            session = import_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
            actual = torch.from_numpy(session.run(None, {"rainy": rainy.numpy()})[0])
        else:
            actual = torch.jit.load(str(path))(rainy)
    return (actual - expected).abs().max().item()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX, TorchScript or a Hugging Face Hub folder",
        description="Export a checkpoint to ONNX, TorchScript or a Hub folder and check it against PyTorch.",
    )
    parser.add_argument("name", choices=list_models(), metavar="NAME", help="architecture")
    parser.add_argument(
        "--weights", required=True, metavar="FILE_OR_TAG",
        help=f"checkpoint file, or the tag of weights shipped with derain (e.g. {pretrained.DEFAULT_TAG}; derain models lists them)",
    )
    parser.add_argument("--format", choices=("onnx", "torchscript", "hub"), required=True)
    parser.add_argument("-o", "--output", type=Path, required=True, help="file to write (hub: folder)")
    parser.add_argument(
        "--size", type=int, default=64, help="side of the example input (a multiple of the model's)"
    )
    parser.add_argument("--static", action="store_true", help="fix H and W to --size (ONNX)")
    parser.set_defaults(func=run)


def _is_tag(weights: str) -> bool:
    """A shipped pretrained tag, and no file of that name: a newcomer's first export is of the
    weights that came with derain."""
    return not Path(weights).exists() and weights in pretrained.catalogue().cards


def load_weights(weights: str, name: str) -> nn.Module:
    """``weights`` as a checkpoint file or a shipped pretrained tag (checked against its card)."""
    if _is_tag(weights):
        return pretrained.load_pretrained(weights, architecture=name)
    return load_checkpoint(Path(weights), name)


def weights_file(weights: str) -> Path:
    """The file behind ``weights``: the tag's shipped safetensors, or ``weights`` itself."""
    return pretrained.pretrained_card(weights).weights if _is_tag(weights) else Path(weights)


def run(args: argparse.Namespace) -> int:
    try:
        model = load_weights(args.weights, args.name).cpu()
    except (CheckpointError, pretrained.PretrainedError) as err:
        print(f"derain export: error: {err}", file=sys.stderr)
        return 2
    card = inference_card(model)
    if args.size % card.size_multiple or args.size < card.min_size:
        print(
            f"derain export: error: --size {args.size} must be a multiple of {card.size_multiple} "
            f"and at least {card.min_size} for {args.name}",
            file=sys.stderr,
        )
        return 2
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, args.size, args.size, generator=generator)
    if args.format == "hub":
        return _export_hub(args, model, example)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "onnx":
        try:
            import_onnxruntime()  # before the slow export
        except ValueError as err:
            print(f"derain export: error: {err}", file=sys.stderr)
            return 2
        try:
            export_onnx(model, args.output, card, args.size, dynamic=not args.static)
        except torch.onnx.OnnxExporterError as err:
            reason = str(err).splitlines()[0]
            if args.static:
                print(f"derain export: error: {args.name} cannot be exported to ONNX ({reason})", file=sys.stderr)
            else:
                print(f"derain export: error: {args.name} cannot be exported to ONNX with dynamic height and width "
                      f"({reason}); export one fixed size with --static --size N", file=sys.stderr)
            return 1
        tolerance = ONNX_TOLERANCE
    else:
        export_torchscript(model, args.output, example)
        tolerance = TORCHSCRIPT_TOLERANCE
    # A second, non-square size checks that height and width really are dynamic.
    sizes = [(args.size, args.size)]
    if not args.static:
        sizes.append((args.size + card.size_multiple, args.size + 2 * card.size_multiple))
    for height, width in sizes:
        rainy = torch.rand(1, 3, height, width, generator=generator)
        error = parity_error(model, args.output, args.format, rainy)
        if not error <= tolerance:
            print(
                f"derain export: error: {args.output} differs from PyTorch by {error:.2e} "
                f"(> {tolerance:.0e}) on a {width}x{height} input"
                + ("" if args.static else "; try --static"),
                file=sys.stderr,
            )
            return 1
        print(f"parity {width}x{height}: max |difference| {error:.2e} <= {tolerance:.0e}")
    print(f"wrote {args.output}")
    return 0


def _export_hub(args: argparse.Namespace, model: nn.Module, example: torch.Tensor) -> int:
    """Write the Hub folder, read it back as a user would, and compare the outputs."""
    source = weights_file(args.weights)
    state_dict, meta = read_state_dict(source)
    config, _ = _config_for(args.name, state_dict, meta, source)
    hub.save_pretrained(args.output, model.state_dict(), args.name, config, model_card(args.name))
    with torch.no_grad():
        error = (first_output(load_checkpoint(args.output)(example)) - first_output(model(example))).abs().max().item()
    if error != 0:
        print(f"derain export: error: {args.output} differs from {args.weights} by {error:.2e}", file=sys.stderr)
        return 1
    print(f"parity {args.size}x{args.size}: identical outputs")
    print(f"wrote {args.output}; publish it with: huggingface-cli upload OWNER/NAME {args.output}")
    return 0

"""Blocks shared by the Restormer-family models (DRSformer, CPRAformer, DDSAformer), and the
layout and state-dict helpers every model uses.

Module and attribute names follow the official code (Restormer, DRSformer, DAIT), because
the parameter names they produce are the format of the released checkpoints.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def check_input(x: torch.Tensor, channels: int, multiple: int, min_size: int = 1) -> None:
    """Raise a ``ValueError`` naming the shape when ``x`` cannot go through a model."""
    if x.dim() != 4:
        raise ValueError(f"expected a 4-D (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if c != channels:
        raise ValueError(f"expected {channels} channels, got shape {tuple(x.shape)}")
    if h % multiple or w % multiple or h < min_size or w < min_size:
        need = f"multiples of {multiple}" + (f" and at least {min_size}" if min_size > 1 else "")
        raise ValueError(
            f"height and width must be {need}, got shape {tuple(x.shape)}; "
            "pad the image (derain.inference pads and crops for you)"
        )


class _NormParams(nn.Module):
    """Holds the affine parameters under ``body`` so keys read ``norm1.body.weight``."""

    def __init__(self, channels: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout where its convolutions run fastest.

    On CPU, oneDNN's depthwise kernels (float32, bfloat16, float16) are several times
    faster on channels-last tensors than on NCHW ones, and its 1×1 convs become plain
    matrix products without a reorder; together they dominate the Transformer blocks' run
    time. float64 goes through PyTorch's generic kernels, which are fast on NCHW only.
    Values are the same either way.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def eager_inference() -> bool:
    """Whether this forward runs as eager inference: no autograd, and not being traced by
    ``torch.compile``. Only then do the models take their in-place and fused shortcuts (writes
    into slices with ``out=``, oneDNN's fused ops): autograd cannot differentiate them, and
    ``torch.compile`` breaks its graph at them and fuses by itself."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def fused_conv(conv: nn.Conv2d, x: torch.Tensor, *, gelu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``, then GELU (erf) when ``gelu``, then ``+ residual`` when given, in one pass.

    Eager PyTorch runs the GELU and the sum as two more sweeps over the map, which cost DMSR
    (dense convs, GELU after most, a residual sum per block) about a sixth of its time on CPU.
    oneDNN applies them inside the convolution as post-ops (the fused ops ``torch.compile``'s
    CPU backend emits): used for float32 CPU inference; elsewhere (training, CUDA, other
    dtypes, inside ``torch.compile``) the same function runs unfused.
    """
    fusable = (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and eager_inference()
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and not (gelu and residual is not None)
        and torch.backends.mkldnn.is_available()
    )
    if not fusable:
        y = conv(x)
        if gelu:
            y = F.gelu(y)
        return y if residual is None else y + residual
    args = (conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if residual is not None:
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *args, "add", None, None, [], None)
    return torch.ops.mkldnn._convolution_pointwise(x, *args, "gelu" if gelu else "none", [], "none")


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of a (B, 3·C, H, W) map as (B, heads, C_head, H·W) views, in whatever memory format it has."""
    return qkv.flatten(2).unflatten(1, (3, num_heads, -1)).unbind(1)


def merge_heads(out_t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Channel attention's (B, heads, H·W, C_head) output, computed as (weights · v)ᵀ = vᵀ · weightsᵀ,
    as a (B, C, H, W) map: channels-last in memory once the heads merge, with one copy at most."""
    return out_t.permute(0, 2, 1, 3).reshape(out_t.shape[0], height, width, -1).permute(0, 3, 1, 2)


def cosine_scores(q: torch.Tensor, k: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``normalize(q) · normalize(k)ᵀ · temperature`` over the last axis (eps 1e-12, as F.normalize),
    dividing the C×C products by the norms instead of writing two normalised H·W-sized copies."""
    q_norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(1e-12)
    k_norm = torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-12)
    return (q @ k.transpose(-2, -1)) / (q_norm * k_norm.transpose(-2, -1)) * temperature


# The top-k softmax family: softmax over the k largest scores of each row. The paper form
# (mask the rest, softmax the whole row) is derain.models.reference.masked_softmax.


def top_k_softmax(scores: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Softmax over the ``k`` largest entries of each row of ``scores``; 0 elsewhere.

    Equals masking the rest to ``-inf`` before the softmax, without building the mask: the
    softmax runs on the ``topk`` values only and is scattered into a zero matrix. ``k`` is
    one count for every row, or a (B,) tensor of counts, one per batch item.
    """
    if isinstance(k, int):
        values, index = scores.topk(k, dim=-1)
        weights = values.softmax(dim=-1)
    else:
        values, index = scores.topk(int(k.max()), dim=-1)
        rank = torch.arange(values.shape[-1], device=values.device)
        beyond_k = rank >= k.view(-1, *([1] * (values.dim() - 1)))
        weights = values.masked_fill(beyond_k, float("-inf")).softmax(dim=-1)
    return torch.zeros_like(scores).scatter_(-1, index, weights)


def masked_top_k_softmax(scores: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """Softmax over the last axis after replacing all but the ``k`` largest scores by ``fill``.

    With ``fill = -inf`` this is :func:`top_k_softmax`; a finite ``fill`` (DDSAformer's
    ``mask_value="zero"``) lets the dropped entries keep some weight. Scattering the kept
    values into a filled tensor masks with one write instead of a 0/1 mask.
    """
    kept, index = scores.topk(k, dim=-1)
    return torch.full_like(scores, fill).scatter(-1, index, kept).softmax(dim=-1)


def count_children(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many numbered children ``prefix.0``, ``prefix.1``, … ``state_dict`` holds (highest index + 1)."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    return max((int(m[1]) for key in state_dict if (m := pattern.match(key))), default=-1) + 1


def restormer_shapes(state_dict: Mapping[str, torch.Tensor], levels: Sequence[str]) -> dict[str, Any]:
    """The constructor arguments every Restormer-family state dict shows the same way: input and
    output channels, width, blocks per U-Net level and whether convolutions have biases."""
    embed = state_dict["patch_embed.proj.weight"]
    return {
        "inp_channels": embed.shape[1],
        "out_channels": state_dict["output.weight"].shape[0],
        "dim": embed.shape[0],
        "num_blocks": [count_children(state_dict, level) for level in levels],
        "bias": "output.bias" in state_dict,
    }


def conv_chunks(conv: nn.Conv2d, x: torch.Tensor, chunks: int) -> tuple[torch.Tensor, ...]:
    """``conv(x).chunk(chunks, dim=1)``, computed as one convolution per chunk of the outputs.

    Chunks of one output are strided views, which every following convolution first copies
    (channels-last); here each chunk is a tensor of its own. Only for ungrouped convs, whose
    output channels are independent: the values are bit-identical on oneDNN.
    """
    if conv.groups != 1:
        raise ValueError(f"conv_chunks needs an ungrouped conv, got groups={conv.groups}")
    biases = conv.bias.chunk(chunks) if conv.bias is not None else (None,) * chunks
    return tuple(
        F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)
        for weight, bias in zip(conv.weight.chunk(chunks), biases)
    )


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel of a (B, C, H, W) tensor.

    Computes on NCHW directly instead of the official reshape to (B, H·W, C) and back,
    which costs two copies per norm. ``with_bias=False`` is Restormer's "BiasFree" norm:
    the variance is taken about the mean, but the mean is not subtracted.
    """

    def __init__(self, channels: int, with_bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.body = _NormParams(channels, with_bias)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two passes instead of torch.var_mean(dim=1), which is slow on NCHW on CPU.
        centered = x - x.mean(1, keepdim=True)
        scale = torch.rsqrt((centered * centered).mean(1, keepdim=True) + self.eps)
        weight = self.body.weight.view(1, -1, 1, 1)
        # in place on fresh products: same values, fewer full-size allocations
        if self.body.bias is None:
            return (x * scale).mul_(weight)
        return (centered * scale).mul_(weight).add_(self.body.bias.view(1, -1, 1, 1))


def layer_norm_type_has_bias(layer_norm_type: str) -> bool:
    """Official rule: ``'BiasFree'`` selects the bias-free norm, any other string the other."""
    return layer_norm_type != "BiasFree"


class Downsample(nn.Module):
    """3×3 conv to half the channels, then pixel-unshuffle: (C, H, W) → (2C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3×3 conv to twice the channels, then pixel-shuffle: (C, H, W) → (C/2, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchEmbed(nn.Module):
    """Bias-free k×k convolution from the image to ``dim`` features (key ``proj``)."""

    def __init__(self, in_channels: int, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


BlockFactory = Callable[[int, int], nn.Module]
"""Builds one Transformer block from (channels, heads)."""


class RestormerUNet(nn.Module):
    """The four-level U-Net of Restormer that DRSformer, CPRAformer and DDSAformer share.

    Levels work at dim, 2·dim, 4·dim, 8·dim channels; decoder levels 3 and 2 reduce the
    concatenated skip with a 1×1 conv, decoder level 1 keeps 2·dim channels. Subclasses
    set ``encoder_level0`` (after the patch embedding) and ``refinement`` (after decoder
    level 1); an ``nn.Identity`` adds no parameters, so absent stages add no keys.
    """

    def __init__(
        self,
        block: BlockFactory,
        inp_channels: int,
        out_channels: int,
        dim: int,
        num_blocks: Sequence[int],
        heads: Sequence[int],
        bias: bool,
        patch_kernel: int = 3,
    ) -> None:
        super().__init__()
        if out_channels != inp_channels:
            raise ValueError(
                f"out_channels ({out_channels}) must equal inp_channels ({inp_channels}): "
                "the output adds the input image"
            )
        self.inp_channels = inp_channels

        def stage(channels: int, count: int, num_heads: int) -> nn.Sequential:
            return nn.Sequential(*(block(channels, num_heads) for _ in range(count)))

        self.patch_embed = PatchEmbed(inp_channels, dim, patch_kernel)
        self.encoder_level0: nn.Module = nn.Identity()
        self.encoder_level1 = stage(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, num_blocks[3], heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, num_blocks[0], heads[0])
        self.refinement: nn.Module = nn.Identity()
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        check_input(inp_img, self.inp_channels, multiple=8)
        enc1 = self.encoder_level1(self.encoder_level0(self.patch_embed(inp_img)))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1))
        del latent, enc3  # each skip is dropped once concatenated (in inference, nothing else holds it)
        dec3 = self.decoder_level3(dec3)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        del dec3, enc2
        dec2 = self.decoder_level2(dec2)
        dec1 = torch.cat([self.up2_1(dec2), enc1], 1)
        del dec2, enc1  # the full-size skip is not alive through decoder level 1
        dec1 = self.decoder_level1(dec1)
        # the blocks may compute channels-last (fast_layout); callers get contiguous NCHW
        return (self.output(self.refinement(dec1)) + inp_img).contiguous()

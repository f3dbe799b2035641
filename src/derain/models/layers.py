"""Blocks shared by the Restormer-family models (DRSformer, CPRAformer, DDSAformer).

Module and attribute names follow the official code (Restormer, DRSformer, DAIT), because
the parameter names they produce are the format of the released checkpoints.
"""

from __future__ import annotations

from typing import Callable, Sequence

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
        dec3 = self.decoder_level3(dec3)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + inp_img

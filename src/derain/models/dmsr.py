"""DMSR: dual-domain multi-scale representation network for single-image deraining.

Paper: S. Zou, Y. Zou, M. Zhang, S. Luo, G. Gao, G. Qi, "Learning Dual-Domain Multi-Scale
Representations for Single Image Deraining", ICME 2025 (arXiv 2503.12014).
Official code: https://github.com/zs1314/DMSR (commit 869adfc, ``models/DMSR.py`` and
``models/attention.py``), Apache-2.0 licence. Written anew for derain; module and attribute
names follow the official code because they are the key names of the released checkpoints.

A three-level encoder-decoder (widths C, 2C, 4C with C = 48) that takes the image at full,
1/2 and 1/4 resolution and predicts a residual at each of them. Every level is a stack of
plain residual blocks ending in one dual-domain block: a multi-scale spatial branch (MPSRM)
beside a frequency branch (FDSM).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ModelCard, Tiling, register_model
from .layers import check_input, count_children, fast_layout, fused_conv


class BasicConv(nn.Module):
    """Convolution with bias, then GELU when ``act`` (the official flag is named ``relu``).

    ``transpose=True`` is the official ×2 upsampler: ConvTranspose2d(k=4, stride=2, padding=1).
    The official class also offers a BatchNorm that DMSR never enables; it is left out.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        act: bool = True, transpose: bool = False,
    ) -> None:
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2 - 1
            )
        else:
            conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2
            )
        self.main = nn.Sequential(conv, nn.GELU()) if act else nn.Sequential(conv)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The block, plus ``residual`` (only without ``act``) in the same pass."""
        conv = self.main[0]
        if isinstance(conv, nn.ConvTranspose2d):
            return self.main(x)
        return fused_conv(conv, x, gelu=len(self.main) > 1, residual=residual)


class SpatialAttention(nn.Module):
    """One map from the channel mean and channel max: 7×7 conv with reflect padding."""

    def __init__(self) -> None:
        super().__init__()
        self.sa = nn.Conv2d(2, 1, 7, padding=3, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sa(torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], 1))


class PixelAttention(nn.Module):
    """Per-channel gate σ(conv7×7(x_j, guide_j)) from each channel of ``x`` and of ``guide``.

    The official code interleaves the two tensors channel by channel (x₀, g₀, x₁, g₁, …)
    and applies a 7×7 conv with one group per channel pair (reflect padding). Here the
    same sum (up to rounding order) is two depthwise convs with ``pa2.weight[:, 0]`` and
    ``pa2.weight[:, 1]``: no interleaved copy, and oneDNN runs depthwise convs tens of
    times faster than groups of two channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pa2 = nn.Conv2d(
            2 * channels, channels, 7, padding=3, padding_mode="reflect", groups=channels
        )

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        weight, bias, groups = self.pa2.weight, self.pa2.bias, self.pa2.groups
        x, guide = (F.pad(t, (3, 3, 3, 3), mode="reflect") for t in (x, guide))
        gate = F.conv2d(x, weight[:, :1], bias, groups=groups)
        gate = gate + F.conv2d(guide, weight[:, 1:], groups=groups)
        return torch.sigmoid(gate)


class SPGA(nn.Module):
    """Spatial-pixel gated attention of MPSRM: ``σ(pa(r, sa(x)·dw(x))) + x``.

    x = ReLU(GELU(1×1 conv(r))). As in the official code the gate is added to x, not
    multiplied, so the block input r reaches the output only through the gate.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv2 = BasicConv(channels, channels, 1)
        self.sa = SpatialAttention()
        self.pa = PixelAttention(channels)
        self.dwconv = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.GELU(),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(r), inplace=True)
        guide = self.sa(x) * self.dwconv(x)
        return self.pa(r, guide) + x


class MPSRM(nn.Module):
    """Multi-scale progressive spatial refinement: coarse-to-fine SPGA at pools 4, 2, 1.

    Each scale refines its pooled input plus the ×2-upsampled result of the coarser one;
    all results are upsampled to full size and added to the input. Resizing is bilinear
    with ``align_corners=True`` as in the official code; needs H, W divisible by 4.
    """

    pool_sizes = (4, 2, 1)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in self.pool_sizes
        )
        self.dynas = nn.ModuleList(SPGA(channels) for _ in self.pool_sizes)
        self.conv_sum = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        total = x
        coarser = None
        for pool, conv, spga in zip(self.pool_sizes, self.convs, self.dynas):
            # Pooling by 1 and resizing to the same size are exact identities: skipped.
            y = F.avg_pool2d(x, pool) if pool > 1 else x
            if coarser is not None:
                y = y + F.interpolate(coarser, scale_factor=2, mode="bilinear", align_corners=True)
            coarser = spga(conv(y))
            if pool > 1:
                total = total + F.interpolate(coarser, size, mode="bilinear", align_corners=True)
            else:
                total = total + coarser
        return self.conv_sum(F.gelu(total))


class FourierUnit(nn.Module):
    """Global mixing in frequency: rfft2 (ortho) → 1×1 conv → BN → ReLU → irfft2.

    The real and imaginary parts enter the conv interleaved per channel (Re₀, Im₀, Re₁,
    Im₁, …), as in the official code (CPRAformer's Fourier unit uses another layout).
    Laid out channels-last, that interleaving is the memory order of a complex tensor, so
    the way back to complex numbers is a view; the official code copies both ways.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spectrum = torch.view_as_real(torch.fft.rfft2(x, norm="ortho"))  # (B, C, H, W/2+1, 2)
        # The one copy: (B, H, W/2+1, C, 2) memory, seen as a channels-last (B, 2C, H, W/2+1).
        interleaved = spectrum.permute(0, 2, 3, 1, 4).reshape(b, h, -1, 2 * c).permute(0, 3, 1, 2)
        interleaved = F.relu(self.bn(self.conv_layer(interleaved)), inplace=True)
        # Conv and BN keep the channels-last layout, so contiguous() is a no-op guard.
        pairs = interleaved.permute(0, 2, 3, 1).contiguous().unflatten(3, (c, 2))
        mixed = torch.fft.irfft2(torch.view_as_complex(pairs), s=(h, w), dim=(1, 2), norm="ortho")
        return mixed.permute(0, 3, 1, 2)  # (B, C, H, W)


class FDSM(nn.Module):
    """Frequency-domain scale mixer on C channels (``channels`` = C/2, as officially).

    Half of the input goes through a depthwise 3×3, the other half through a depthwise
    5×5 (each with GELU); the Fourier unit adds global context; then BN and ReLU.
    ``conv_mid`` is built by the official code but never used; it is kept so the
    released checkpoints load strictly, and gets no gradient.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv_init_1 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.GELU()
        )
        self.conv_init_2 = nn.Sequential(
            nn.Conv2d(channels, channels, 5, padding=2, groups=channels), nn.GELU()
        )
        self.conv_mid = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.GELU())
        self.FFC = FourierUnit(2 * channels)
        self.bn = nn.BatchNorm2d(2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.split(self.channels, dim=1)
        x0 = torch.cat([fused_conv(self.conv_init_1[0], first, gelu=True), fused_conv(self.conv_init_2[0], second, gelu=True)], 1)
        # x0 first: the sum takes x0's memory layout, not the inverse FFT's.
        return F.relu(self.bn(x0 + self.FFC(x0)), inplace=True)


class PlainResBlock(nn.Module):
    """``x + conv(GELU(dw3×3(GELU(conv(x)))))`` (official ``ResBlock_none``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = BasicConv(channels, channels, 3)
        self.conv2 = BasicConv(channels, channels, 3, act=False)
        self.proj = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(fused_conv(self.proj, self.conv1(x), gelu=True), residual=x)


class DualDomainResBlock(nn.Module):
    """The last block of every level (official ``ResBlock``): MPSRM and FDSM side by side."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = BasicConv(channels, channels, 3)
        self.conv2 = BasicConv(2 * channels, channels, 3, act=False)
        self.MPSRM = MPSRM(channels)
        self.FDSM = FDSM(channels // 2)
        self.proj = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = fused_conv(self.proj, self.conv1(x), gelu=True)
        return self.conv2(torch.cat([self.MPSRM(u), self.FDSM(u)], 1), residual=x)


class Stage(nn.Module):
    """``num_res − 1`` plain blocks and one dual-domain block (official ``EBlock``/``DBlock``)."""

    def __init__(self, channels: int, num_res: int) -> None:
        super().__init__()
        blocks = [PlainResBlock(channels) for _ in range(num_res - 1)]
        self.layers = nn.Sequential(*blocks, DualDomainResBlock(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SCM(nn.Module):
    """Shallow features of a downsampled input image, instance-normalised (affine).

    The instance norm subtracts each channel's mean, which cancels the bias of the 1×1
    conv before it exactly; that bias (``main.3.main.0.bias``) is kept for strict loading
    but not applied, so it is visibly dead instead of receiving rounding-noise gradients.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(3, channels // 4, 3),
            BasicConv(channels // 4, channels // 2, 1),
            BasicConv(channels // 2, channels // 2, 3),
            BasicConv(channels // 2, channels, 1, act=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *convs, project, norm = self.main
        for conv in convs:
            x = conv(x)
        x = norm(F.conv2d(x, project.main[0].weight))
        # InstanceNorm returns NCHW whatever it is given; back to the layout the convs run fastest in.
        return fast_layout(x)


class FAM(nn.Module):
    """Merges encoder features with the SCM features of the same scale (3×3 conv)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.merge = BasicConv(2 * channels, channels, 3, act=False)

    def forward(self, features: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([features, shallow], 1))


@register_model(
    ModelCard(
        name="dmsr",
        paper=(
            "S. Zou, Y. Zou, M. Zhang, S. Luo, G. Gao, G. Qi, \"Learning Dual-Domain Multi-Scale "
            "Representations for Single Image Deraining\", IEEE International Conference on "
            "Multimedia and Expo (ICME), 2025; arXiv:2503.12014"
        ),
        official_repo="https://github.com/zs1314/DMSR",
        licence="Apache-2.0",
        size_multiple=16,
        min_size=64,
        batch_independent=True,
        num_outputs=3,
        half_precision=False,
        tiling=Tiling.OFFICIAL_WINDOWS,
        official_protocol="windows",
        tiling_notes=(
            "The official test splits every image into non-overlapping 128×128 windows (plus "
            "edge windows) and stitches the full-resolution output; use 128×128 tiles to "
            "reproduce the paper. The Fourier units see the whole tile, so results depend on "
            "the tile size; tiles must be multiples of 16 and at least 64×64."
        ),
        recipe="configs/dmsr.yaml",
        tiny_config={"num_res": 2, "base_channel": 8},
        paper_results={
            "Test100": (28.88, 0.890),
            "Rain100H": (29.41, 0.873),
            "Rain100L": (35.19, 0.957),
            "Test2800": (32.50, 0.931),
            "Test1200": (31.35, 0.910),
        },
        default_config={},
        unused_parameters=(r"FDSM\.conv_mid\.", r"SCM\d\.main\.3\.main\.0\.bias"),
        notes=(
            "Trained on Rain13K; paper results are Table 1 of the paper (Y channel, MATLAB). "
            "Returns (full, 1/2, 1/4) resolution restorations; the first is the result. "
            "The 1/2 and 1/4 inputs are nearest-neighbour subsamples (every second pixel). "
            "FDSM.conv_mid is built but never used by the official code, and the bias of "
            "each SCM's last conv is cancelled by the instance norm after it (both kept for "
            "strict loading). Half precision is not offered: torch has no bfloat16 FFT, and "
            "float16 FFTs run only on CUDA for power-of-two sizes. The official loss: L1 plus "
            "0.1 × L1 of the FFT, summed over the three outputs against bilinear-resized targets."
        ),
    )
)
class DMSR(nn.Module):
    """DMSR (Zou et al., ICME 2025); returns ``(full, half, quarter)`` restorations.

    Args:
        num_res: residual blocks per level (``num_res − 1`` plain, then one dual-domain
            block); the released checkpoints use 16.
        base_channel: width of the finest level (hard-coded 48 officially; only 48 matches
            the released checkpoints). Must be even.

    Input: rainy RGB (B, 3, H, W) in [0, 1] with H, W multiples of 16 and at least 64 (the
    coarsest MPSRM pool must be divisible by 4 and exceed the 7×7 reflect padding).
    Output: the restored image at full, 1/2 and 1/4 resolution, finest first.
    """

    def __init__(self, num_res: int = 16, base_channel: int = 48) -> None:
        super().__init__()
        if num_res < 1:
            raise ValueError(f"num_res must be at least 1, got {num_res}")
        if base_channel < 2 or base_channel % 2:
            raise ValueError(f"base_channel must be a positive even number, got {base_channel}")
        c = base_channel
        self.Encoder = nn.ModuleList([Stage(width, num_res) for width in (c, 2 * c, 4 * c)])
        self.feat_extract = nn.ModuleList([
            BasicConv(3, c, 3),
            BasicConv(c, 2 * c, 3, stride=2),
            BasicConv(2 * c, 4 * c, 3, stride=2),
            BasicConv(4 * c, 2 * c, 4, stride=2, transpose=True),
            BasicConv(2 * c, c, 4, stride=2, transpose=True),
            BasicConv(c, 3, 3, act=False),
        ])
        self.Decoder = nn.ModuleList([Stage(width, num_res) for width in (4 * c, 2 * c, c)])
        self.Convs = nn.ModuleList([BasicConv(4 * c, 2 * c, 1), BasicConv(2 * c, c, 1)])
        self.ConvsOut = nn.ModuleList(
            [BasicConv(4 * c, 3, 3, act=False), BasicConv(2 * c, 3, 3, act=False)]
        )
        self.FAM1 = FAM(4 * c)
        self.SCM1 = SCM(4 * c)
        self.FAM2 = FAM(2 * c)
        self.SCM2 = SCM(2 * c)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Constructor kwargs of the model that produced ``state_dict``."""
        key = "feat_extract.0.main.0.weight"
        if key not in state_dict:
            raise KeyError(f"not a DMSR state dict: no {key!r}")
        num_res = count_children(state_dict, "Encoder.0.layers")
        if not num_res:
            raise KeyError("not a DMSR state dict: no keys start with 'Encoder.0.layers.'")
        return {"num_res": num_res, "base_channel": int(state_dict[key].shape[0])}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_input(x, 3, multiple=16, min_size=64)
        # The layout propagates through every layer; the outputs are returned contiguous NCHW.
        x = fast_layout(x)
        # Official: F.interpolate(scale_factor=0.5), nearest, i.e. every second pixel.
        x_2 = x[..., ::2, ::2]
        x_4 = x_2[..., ::2, ::2]
        z2 = self.SCM2(x_2)
        z4 = self.SCM1(x_4)

        res1 = self.Encoder[0](self.feat_extract[0](x))
        res2 = self.Encoder[1](self.FAM2(self.feat_extract[1](res1), z2))
        z = self.Encoder[2](self.FAM1(self.feat_extract[2](res2), z4))
        z = self.Decoder[0](z)
        quarter = self.ConvsOut[0](z) + x_4

        z = self.Convs[0](torch.cat([self.feat_extract[3](z), res2], 1))
        z = self.Decoder[1](z)
        half = self.ConvsOut[1](z) + x_2

        z = self.Convs[1](torch.cat([self.feat_extract[4](z), res1], 1))
        full = self.feat_extract[5](self.Decoder[2](z)) + x
        return full.contiguous(), half.contiguous(), quarter.contiguous()

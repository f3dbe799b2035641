"""CPRAformer: a Restormer-style U-Net whose blocks mix sparse channel attention and convolution.

Paper: Shun Zou, Yi Zou, Juncheng Li, Guangwei Gao, Guojun Qi, "Cross Paradigm
Representation and Alignment Transformer for Image Deraining", ACM MM 2025
(arXiv:2504.16455). Official code: https://github.com/zs1314/DAIT (Apache-2.0), where the
model is the class ``DAIT`` ("Dual Aggregation Interaction Transformer") in
``models/DAIT.py`` and ``models/my_fft.py``. Written from that code (commit 58aaf9d); the
parameter names are the official ones, so released checkpoints load with ``strict=True``.

Each block's attention splits its input in two halves: a convolutional branch (SPR-SA)
and a channel self-attention that keeps only the top-k scores per row (SPC-SA), with k
predicted by a small gate. The two branches gate each other (FAIM stage 1), and a
per-channel affine map on the Fourier coefficients follows (FAIM stage 2). The
feed-forward network (MSGN) gates a 3×3 depthwise branch with a 5×5 one.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ModelCard, Tiling, register_model
from .layers import (
    ChannelLayerNorm,
    RestormerUNet,
    conv_chunks,
    count_children,
    fast_layout,
    layer_norm_type_has_bias,
    merge_heads,
    restormer_shapes,
    split_heads,
    top_k_softmax,
)


class SpatialPixelRefinement(nn.Module):
    """SPR-SA: grouped 3×3 conv to twice the width, channel-softmax reweighting, 1×1 back.

    (B, C, H, W) → (B, C, H, W). Official ``spr_sa``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels * 2
        self.conv_0 = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, groups=channels),
            nn.Conv2d(hidden, hidden, 1),
        )
        self.conv_1 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_0(x)
        weights = x.mean(dim=(2, 3), keepdim=True).softmax(dim=1)
        return self.conv_1(F.gelu(weights * x))


class FourierAffine(nn.Module):
    """FAIM stage 2: a per-channel scale and shift of the real and imaginary parts of fft2(x).

    The official ``Stage2_fft`` takes ``fft2`` (norm "backward"), concatenates all real
    parts and then all imaginary parts as 2C channels, applies a depthwise 1×1 conv
    (``conv1x1.conv``: scales a_c, b_c and shifts s_c, t_c), and returns the real part of
    ``ifft2``. For a real x the real part of F = fft2(x) is the transform of the even part
    (x(p) + x(−p))/2 and i·Im F that of the odd part (x(p) − x(−p))/2, where −p is taken
    modulo the image size; a constant shift transforms to an impulse at pixel (0, 0). So

        out(p) = (a+b)/2 · x(p) + (a−b)/2 · x(−p) + s · [p = (0, 0)],

    and the imaginary shift t cancels exactly. This computes that identity in the
    spatial domain: the same function with no FFT and no complex tensors (so it also runs
    in half precision), and rounding errors smaller than the official FFT round trip.

    The official fft2/ifft2 form is :func:`derain.models.reference.cpraformer_fourier_stage`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1x1 = nn.ModuleDict(
            {"conv": nn.Conv2d(channels * 2, channels * 2, 1, groups=channels * 2)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv1x1["conv"]
        real_scale, imag_scale = conv.weight.view(2, -1, 1, 1)
        mirrored = x.flip((-2, -1)).roll((1, 1), (-2, -1))  # x(−p mod size)
        out = torch.addcmul(
            (real_scale - imag_scale) / 2 * mirrored, (real_scale + imag_scale) / 2, x
        )
        out[:, :, 0, 0] += conv.bias[: x.shape[1]]
        return out


class CrossParadigmAttention(nn.Module):
    """SPC-SA and SPR-SA on the two halves of the input, fused by FAIM. Official ``Attention``.

    (B, C, H, W) → (B, C, H, W). The attention half works on the (C/2)/heads channels of
    each head: scores q·kᵀ between channels, times a learned temperature; each row keeps
    its top-k scores, k = int(C_head · mean(gate(x))).

    ``batch_independent=False`` (default) is the official rule: one k from the mean gate
    over the whole batch, so an image's output depends on the other images of the batch
    (and, in the official tiled test, on the other windows of the same image). With
    ``True`` each image gets its own k from its own gate map. In both modes k is raised
    to at least 1: the official code lets k reach 0 when C_head · mean(gate) < 1, which
    masks every score and makes the softmax, and the whole output, NaN.

    ``linear_2`` is built (it is in the official checkpoints) but never used, as in the
    official code. The gate acts only through the integer k, so it gets no gradient.
    """

    def __init__(
        self, dim: int, num_heads: int, bias: bool, batch_independent: bool = False
    ) -> None:
        super().__init__()
        half = dim // 2
        if dim % 2 or half % num_heads or dim // 16 < 1:
            raise ValueError(
                f"CPRAformer block width {dim} with {num_heads} heads: the width must be even, "
                f"at least 16, and half of it ({half}) divisible by the number of heads"
            )
        self.num_heads = num_heads
        self.batch_independent = batch_independent
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.spr_sa = SpatialPixelRefinement(half)
        self.linear_0 = nn.Conv2d(dim, dim, 1)
        self.linear_2 = nn.Conv2d(dim, dim, 1)
        self.qkv = nn.Conv2d(half, half * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(half * 3, half * 3, 3, padding=1, groups=half * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        # The official code adds attn1·o + attn2·o + attn3·o + attn4·o for four copies of
        # the same product o = attn @ v; only their sum matters.
        self.attn1 = nn.Parameter(torch.tensor([0.2]))
        self.attn2 = nn.Parameter(torch.tensor([0.2]))
        self.attn3 = nn.Parameter(torch.tensor([0.2]))
        self.attn4 = nn.Parameter(torch.tensor([0.2]))
        self.channel_interaction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(half, dim // 8, 1),
            nn.BatchNorm2d(dim // 8),
            nn.GELU(),
            nn.Conv2d(dim // 8, half, 1),
        )
        self.spatial_interaction = nn.Sequential(
            nn.Conv2d(half, dim // 16, 1),
            nn.BatchNorm2d(dim // 16),
            nn.GELU(),
            nn.Conv2d(dim // 16, 1, 1),
        )
        self.fft = FourierAffine(dim)
        self.gate = nn.Sequential(
            nn.Conv2d(half, dim // 4, 1), nn.ReLU(), nn.Conv2d(dim // 4, 1, 1), nn.Sigmoid()
        )

    def top_k_count(self, x: torch.Tensor, channels: int) -> int | torch.Tensor:
        """k = int(channels · mean gate), at least 1: one int, or one per image (B,)."""
        gate = self.gate(x)
        if self.batch_independent:
            return (channels * gate.mean(dim=(1, 2, 3))).long().clamp(1, channels)
        return min(max(int(channels * gate.mean()), 1), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        conv_in, attn_in = conv_chunks(self.linear_0, x, 2)
        conv_out = self.spr_sa(conv_in)

        q, k, v = split_heads(self.qkv_dwconv(self.qkv(attn_in)), self.num_heads)
        channels = q.shape[2]
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        scores = (q @ k.transpose(-2, -1)) * self.temperature
        weights = top_k_softmax(scores, self.top_k_count(attn_in, channels))
        branch_sum = self.attn1 + self.attn2 + self.attn3 + self.attn4
        attn_out = merge_heads(v.transpose(-2, -1) @ (weights * branch_sum).transpose(-2, -1), h, w)

        # FAIM stage 1: each branch is gated by a map computed from the other one.
        channel_map = self.channel_interaction(attn_out)
        spatial_map = self.spatial_interaction(conv_out)
        fused = torch.cat(
            [attn_out * torch.sigmoid(spatial_map), conv_out * torch.sigmoid(channel_map)], dim=1
        )
        return self.fft(self.project_out(fused))


class MultiScaleGatedFeedForward(nn.Module):
    """MSGN: GELU(3×3 depthwise conv) of half the hidden features times a 5×5 one of the rest.

    Official ``FeedForward``; hidden width int(dim · ffn_expansion_factor).
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias)
        self.dwconv_2 = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # project_in's halves one after the other, each dropped once used: three hidden maps
        # alive at most instead of five (same values, conv_chunks)
        weight = self.project_in.weight.chunk(2)
        bias = self.project_in.bias.chunk(2) if self.project_in.bias is not None else (None, None)
        gated = F.gelu(self.dwconv(F.conv2d(x, weight[0], bias[0])))
        return self.project_out(gated.mul_(self.dwconv_2(F.conv2d(x, weight[1], bias[1]))))


class CPRAformerBlock(nn.Module):
    """Pre-norm residual block: x + attn(norm1(x)), then x + ffn(norm2(x)).

    Official ``TransformerBlock``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        norm_with_bias: bool,
        batch_independent: bool,
    ) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, norm_with_bias)
        self.attn = CrossParadigmAttention(dim, num_heads, bias, batch_independent)
        self.norm2 = ChannelLayerNorm(dim, norm_with_bias)
        self.ffn = MultiScaleGatedFeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fast_layout(x)
        # residuals added in place to the fresh branch outputs: fewer full-size allocations
        x = self.attn(self.norm1(x)).add_(x)
        return self.ffn(self.norm2(x)).add_(x)


# Block prefixes per U-Net level; the refinement stage uses level 1's head count.
_LEVELS = (
    ("encoder_level1", "decoder_level1", "refinement"),
    ("encoder_level2", "decoder_level2"),
    ("encoder_level3", "decoder_level3"),
    ("latent",),
)
_OFFICIAL_HEADS = (1, 2, 4, 8)
_OFFICIAL_FFN_EXPANSION = 2.66


@register_model(
    ModelCard(
        name="cpraformer",
        paper=(
            "Shun Zou, Yi Zou, Juncheng Li, Guangwei Gao, Guojun Qi. Cross Paradigm "
            "Representation and Alignment Transformer for Image Deraining. ACM MM 2025. "
            "arXiv:2504.16455 (the official code calls it DAIT: Dual Aggregation "
            "Interaction Transformer for Image Deraining)"
        ),
        official_repo="https://github.com/zs1314/DAIT",
        licence="Apache-2.0",
        size_multiple=8,
        min_size=8,
        batch_independent=False,
        num_outputs=1,
        half_precision=False,
        tiling=Tiling.OFFICIAL_WINDOWS,
        official_protocol="windows",
        tiling_notes=(
            "The official test cuts the image into 128×128 windows without overlap (plus "
            "windows aligned to the right and bottom edges for the remainder), runs all "
            "windows of an image as one batch, and pastes them back without blending. "
            "Because the default top-k count is shared by the batch, the paper's numbers "
            "need that same window batching; any other tiling or whole-image inference "
            "changes the outputs slightly."
        ),
        recipe="configs/cpraformer.yaml",
        tiny_config={"dim": 16, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
        paper_results={
            "Test100": (29.65, 0.895),
            "Rain100H": (29.68, 0.875),
            "Rain100L": (35.98, 0.964),
            "Test2800": (33.00, 0.933),
            "Test1200": (31.52, 0.913),
        },
        default_config={},
        unused_parameters=(
            r"\.attn\.linear_2\.",
            r"\.attn\.gate\.",
            r"\.attn\.channel_interaction\.1\.bias$",
            r"\.attn\.spatial_interaction\.0\.bias$",
        ),
        notes=(
            "Official class DAIT. Trained on Rain13K; paper results are Table I of the "
            "official README (Y-channel PSNR/SSIM, MATLAB protocol). By default an image's "
            "output depends on the other images of its batch (one top-k count from the "
            "batch-mean gate, as officially); batch_independent=True gives each image its "
            "own count. The count is kept >= 1 in both modes (the official code produces "
            "NaN when it reaches 0). attn.linear_2 is never used and attn.gate acts only "
            "through an integer count, so neither gets a gradient. The conv biases right "
            "before the attention's BatchNorms (channel_interaction.1.bias, "
            "spatial_interaction.0.bias) are cancelled by the batch statistics in training "
            "mode: their gradient is zero up to rounding. BatchNorm inside the "
            "attention makes training need batch size > 1. Half precision is not "
            "advised: the integer top-k count and the top-k selection jump when "
            "reduced-precision rounding moves a score or the gate mean across a threshold."
        ),
    )
)
class CPRAformer(RestormerUNet):
    """CPRAformer (official class ``DAIT``): rainy (B, 3, H, W) in [0, 1] → restored.

    H and W must be multiples of 8.

    Arguments and defaults are the official ones, plus ``batch_independent`` (see
    :class:`CrossParadigmAttention`): ``False`` reproduces the official outputs, where one
    top-k count is shared by the whole batch. ``LayerNorm_type='BiasFree'`` selects the
    bias-free norm, any other value the norm with bias.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        batch_independent: bool = False,
    ) -> None:
        norm_with_bias = layer_norm_type_has_bias(LayerNorm_type)

        def block(channels: int, num_heads: int) -> CPRAformerBlock:
            return CPRAformerBlock(
                channels, num_heads, ffn_expansion_factor, bias, norm_with_bias, batch_independent
            )

        super().__init__(
            block, inp_channels, out_channels, dim, num_blocks, heads, bias, patch_kernel=7
        )
        self.refinement = nn.Sequential(
            *(block(dim * 2, heads[0]) for _ in range(num_refinement_blocks))
        )

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Constructor arguments that give ``state_dict``'s keys and shapes.

        ``ffn_expansion_factor`` is the official 2.66 when that fits every hidden width,
        otherwise a value that does; a level without blocks keeps the official head count
        (it changes no shape). Raises ``KeyError`` when a required key is missing and
        ``ValueError`` when the shapes fit no configuration.
        """
        config = restormer_shapes(state_dict, [prefixes[0] for prefixes in _LEVELS])
        heads = []
        for default, prefixes in zip(_OFFICIAL_HEADS, _LEVELS):
            found = [k for p in prefixes if (k := f"{p}.0.attn.temperature") in state_dict]
            heads.append(state_dict[found[0]].shape[0] if found else default)

        # int(c · factor) == hidden  ⇔  hidden / c <= factor < (hidden + 1) / c, for every block.
        low, high = 0.0, float("inf")
        for key, weight in state_dict.items():
            if key.endswith(".ffn.dwconv.weight"):
                c = state_dict[key.replace("dwconv.weight", "project_out.weight")].shape[0]
                low, high = max(low, weight.shape[0] / c), min(high, (weight.shape[0] + 1) / c)
        if low >= high:
            raise ValueError("the feed-forward widths fit no single ffn_expansion_factor")
        factor = _OFFICIAL_FFN_EXPANSION
        if not low <= factor < high:
            factor = (low + high) / 2

        norm_bias = any(k.endswith(".norm1.body.bias") for k in state_dict)
        return dict(
            **config,
            num_refinement_blocks=count_children(state_dict, "refinement"),
            heads=heads,
            ffn_expansion_factor=factor,
            LayerNorm_type="WithBias" if norm_bias else "BiasFree",
        )

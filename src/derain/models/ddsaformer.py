"""DDSAformer: image deraining Transformer with dynamic dual self-attention.

Paper: Z. Fan, H. Chen, Y. Li, "Learning Image Deraining Transformer Network with Dynamic
Dual Self-Attention", arXiv:2308.07781, 2023. No official code or weights have been
published; this implementation is derain's own (MIT), built from the paper as read in
``shared/specs/ddsaformer.md``. Every choice the paper leaves open is a constructor
argument, so each ablation of the paper's Table 3 can be built:

* ``attention="dual" | "dense" | "sparse"`` — both branches, dense only, sparse only;
* ``ffn="sefn" | "gdfn"`` — the spatial-enhanced FFN, or Restormer's gated-dconv FFN;
* ``spatial_attention=False`` — SEFN without its spatial attention;
* ``mask_value="-inf" | "zero"`` — how the sparse branch masks the dropped scores.

The network is the Restormer/DRSformer four-level U-Net (:class:`RestormerUNet`) with
dual attention Transformer blocks and a refinement stage of ``num_refinement_blocks``
blocks at 2·dim channels with ``refinement_heads`` heads.
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
    cosine_scores,
    count_children,
    fast_layout,
    layer_norm_type_has_bias,
    masked_top_k_softmax,
    merge_heads,
    restormer_shapes,
    split_heads,
)

ATTENTION_MODES = ("dual", "dense", "sparse")
MASK_VALUES = {"-inf": float("-inf"), "zero": 0.0}
FFN_TYPES = ("sefn", "gdfn")


def top_k_count(ratio: float, channels_per_head: int) -> int:
    """Scores kept per row by the sparse branch: ``int(ratio · C)``, but never fewer than one.

    With zero kept entries a ``-inf`` mask would leave a row of ``-inf`` and softmax would
    return NaN (the failure DRSformer's ``int(C/2)`` has for C = 1).
    """
    return max(1, int(ratio * channels_per_head))


class DynamicDualAttention(nn.Module):
    """DDSA (paper §2.2): channel ("transposed") attention mixing a dense and a sparse softmax.

    Per head, q and k are (C, H·W) and L2-normalised along H·W; P = q·kᵀ·temperature.
    ``dual`` computes (w_dense·softmax(P) + w_sparse·softmax(M(P, k)))·v with one product
    against v; ``dense`` and ``sparse`` keep one branch and its scalar only. The lone
    scalar is redundant with ``project_out`` but names the branch in the state dict, so a
    checkpoint of an ablation says which one it is. Both scalars start at 0.5.

    The paper's formula written out (F.normalize, an explicit mask) is
    :func:`derain.models.reference.ddsaformer_attention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        bias: bool,
        attention: str = "dual",
        topk_ratio: float = 0.7,
        mask_value: str = "-inf",
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        if mask_value not in MASK_VALUES:
            raise ValueError(f"mask_value must be one of {tuple(MASK_VALUES)}, got {mask_value!r}")
        if dim % num_heads:
            raise ValueError(f"{dim} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.dense_weight = nn.Parameter(torch.tensor([0.5])) if attention != "sparse" else None
        self.sparse_weight = nn.Parameter(torch.tensor([0.5])) if attention != "dense" else None
        self.top_k = top_k_count(topk_ratio, dim // num_heads)
        self.fill = MASK_VALUES[mask_value]
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = split_heads(self.qkv_dwconv(self.qkv(x)), self.num_heads)
        scores = cosine_scores(q, k, self.temperature)
        attn = 0
        if self.dense_weight is not None:
            attn = self.dense_weight * scores.softmax(dim=-1)
        if self.sparse_weight is not None:
            attn = attn + self.sparse_weight * masked_top_k_softmax(scores, self.top_k, self.fill)
        return self.project_out(merge_heads(v.transpose(-2, -1) @ attn.transpose(-2, -1), h, w))


def sefn_hidden_width(dim: int, ffn_expansion_factor: float, scale: int) -> int:
    """SEFN's hidden width, rounded down to a multiple of ``scale`` so the groups are equal."""
    return scale * int(dim * ffn_expansion_factor / scale)


class SpatialEnhancedFFN(nn.Module):
    """SEFN (paper §2.3): 1×1 conv, Res2Net hierarchy, GELU, spatial attention, 1×1 conv.

    The hidden features split into ``scale`` groups x1..xs: y1 = x1, y2 = DW3×3(x2),
    yi = DW3×3(xi + y(i−1)) (Res2Net, Gao et al. 2019, with depthwise convs). The spatial
    attention is CBAM's (Woo et al. 2018): a 7×7 conv over the channel-wise [mean, max]
    maps, through a sigmoid, multiplies the features.
    """

    def __init__(
        self,
        dim: int,
        ffn_expansion_factor: float,
        bias: bool,
        scale: int = 3,
        spatial_attention: bool = True,
    ) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"sefn_scale must be at least 2, got {scale} (one group has no hierarchy)")
        hidden = sefn_hidden_width(dim, ffn_expansion_factor, scale)
        if hidden == 0:
            raise ValueError(
                f"SEFN hidden width is 0 for dim={dim}, ffn_expansion_factor={ffn_expansion_factor}, "
                f"sefn_scale={scale}"
            )
        width = hidden // scale
        self.project_in = nn.Conv2d(dim, hidden, 1, bias=bias)
        self.dwconvs = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=bias)
            for _ in range(scale - 1)
        )
        self.spatial_conv = nn.Conv2d(2, 1, 7, padding=3, bias=bias) if spatial_attention else None
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, *rest = conv_chunks(self.project_in, x, len(self.dwconvs) + 1)
        outputs, previous = [first], None
        for conv, group in zip(self.dwconvs, rest):
            previous = conv(group if previous is None else group + previous)
            outputs.append(previous)
        hidden = torch.cat(outputs, dim=1)
        del first, rest, previous, outputs  # the groups are copied: drop them before the GELU
        x = F.gelu(hidden)
        del hidden
        if self.spatial_conv is not None:
            pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
            gate = torch.sigmoid(self.spatial_conv(pooled))
            # in place without autograd, which needs the GELU output for the gate's gradient
            x = x * gate if torch.is_grad_enabled() else x.mul_(gate)
        return self.project_out(x)


class GatedDconvFFN(nn.Module):
    """Restormer's GDFN (Zamir et al., CVPR 2022): the paper's "GDFN instead of SEFN" ablation."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class DualAttentionBlock(nn.Module):
    """DATB (paper eq. 1–2): x + DDSA(LN(x)), then + FFN(LN(·))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        ffn_expansion_factor: float,
        bias: bool,
        with_bias_norm: bool,
        attention: str,
        topk_ratio: float,
        mask_value: str,
        ffn: str,
        spatial_attention: bool,
        sefn_scale: int,
    ) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, with_bias_norm)
        self.attn = DynamicDualAttention(dim, num_heads, bias, attention, topk_ratio, mask_value)
        self.norm2 = ChannelLayerNorm(dim, with_bias_norm)
        if ffn == "sefn":
            self.ffn: nn.Module = SpatialEnhancedFFN(
                dim, ffn_expansion_factor, bias, sefn_scale, spatial_attention
            )
        else:
            self.ffn = GatedDconvFFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fast_layout(x)
        # residuals added in place to the fresh branch outputs: fewer full-size allocations
        x = self.attn(self.norm1(x)).add_(x)
        return self.ffn(self.norm2(x)).add_(x)


_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")


@register_model(
    ModelCard(
        name="ddsaformer",
        paper=(
            "Z. Fan, H. Chen, Y. Li, \"Learning Image Deraining Transformer Network with "
            "Dynamic Dual Self-Attention\", arXiv:2308.07781, 2023"
        ),
        official_repo=None,
        licence=(
            "MIT (derain's own implementation, built from the paper; no official code or "
            "weights have been published)"
        ),
        size_multiple=8,
        min_size=8,
        batch_independent=True,
        num_outputs=1,
        half_precision=True,
        tiling=Tiling.DISCOURAGED,
        overlap=32,
        tiling_notes=(
            "Attention is over channels with statistics pooled over the whole image, so tiles "
            "change the result slightly; use tiles of 256 px or more with 32 px overlap when "
            "the full image does not fit in memory."
        ),
        recipe="configs/ddsaformer.yaml",
        tiny_config={
            "dim": 8,
            "num_blocks": [1, 1, 1, 1],
            "num_refinement_blocks": 1,
            "heads": [1, 2, 2, 4],
        },
        paper_results={
            "Test100": (31.69, 0.919),
            "Rain100H": (30.90, 0.899),
            "Rain100L": (37.93, 0.971),
            "Test2800": (34.03, 0.942),
            "Test1200": (32.11, 0.919),
        },
        notes=(
            "Built from the paper; the choices it leaves open are constructor arguments "
            "(attention, topk_ratio, mask_value, ffn, spatial_attention, sefn_scale). No "
            "released weights: train with the recipe. Sparse top-k keeps "
            "max(1, int(topk_ratio·C_head)) scores per row, so no row is ever all masked. "
            "topk_ratio and mask_value leave no trace in the state dict; checkpoints saved "
            "by derain carry them in their metadata."
        ),
    )
)
class DDSAformer(RestormerUNet):
    """DDSAformer on the Restormer U-Net; output = input + predicted residual.

    The arguments up to ``LayerNorm_type`` follow the Restormer family, with
    ``num_refinement_blocks``/``refinement_heads`` for the paper's stage N0. The others
    select the paper's ablations (see the module docstring); ``spatial_attention`` and
    ``sefn_scale`` apply to ``ffn="sefn"`` only. Input: (B, inp_channels, H, W) in [0, 1],
    H and W multiples of 8.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 2,
        heads: Sequence[int] = (1, 2, 4, 8),
        refinement_heads: int = 1,
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803  (the family's argument name)
        attention: str = "dual",
        topk_ratio: float = 0.7,
        mask_value: str = "-inf",
        ffn: str = "sefn",
        spatial_attention: bool = True,
        sefn_scale: int = 3,
    ) -> None:
        if ffn not in FFN_TYPES:
            raise ValueError(f"ffn must be one of {FFN_TYPES}, got {ffn!r}")

        def block(channels: int, num_heads: int) -> DualAttentionBlock:
            return DualAttentionBlock(
                channels,
                num_heads,
                ffn_expansion_factor=ffn_expansion_factor,
                bias=bias,
                with_bias_norm=layer_norm_type_has_bias(LayerNorm_type),
                attention=attention,
                topk_ratio=topk_ratio,
                mask_value=mask_value,
                ffn=ffn,
                spatial_attention=spatial_attention,
                sefn_scale=sefn_scale,
            )

        super().__init__(block, inp_channels, out_channels, dim, num_blocks, heads, bias)
        self.refinement = nn.Sequential(
            *(block(dim * 2, refinement_heads) for _ in range(num_refinement_blocks))
        )

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Constructor kwargs read from parameter names and shapes.

        ``topk_ratio`` and ``mask_value`` change no parameter, so they come back as the
        defaults; a level with no blocks leaves its head count unknown (KeyError).
        """
        config: dict[str, Any] = restormer_shapes(state_dict, _LEVELS)
        dim = config["dim"]
        heads = [state_dict[f"{level}.0.attn.temperature"].shape[0] for level in _LEVELS]
        num_refinement_blocks = count_children(state_dict, "refinement")
        refinement_heads = (
            state_dict["refinement.0.attn.temperature"].shape[0] if num_refinement_blocks else 1
        )
        block = f"{_LEVELS[0]}.0."
        has_dense = block + "attn.dense_weight" in state_dict
        has_sparse = block + "attn.sparse_weight" in state_dict
        if not (has_dense or has_sparse):
            raise KeyError(f"{block}attn.dense_weight or {block}attn.sparse_weight")
        attention = "dual" if has_dense and has_sparse else ("dense" if has_dense else "sparse")
        ffn = "gdfn" if block + "ffn.dwconv.weight" in state_dict else "sefn"
        config |= {
            "num_refinement_blocks": num_refinement_blocks,
            "heads": heads,
            "refinement_heads": refinement_heads,
            "LayerNorm_type": "WithBias" if block + "norm1.body.bias" in state_dict else "BiasFree",
            "attention": attention,
            "ffn": ffn,
        }
        if ffn == "sefn":
            config["spatial_attention"] = block + "ffn.spatial_conv.weight" in state_dict
            convs = [k for k in state_dict if k.startswith(block + "ffn.dwconvs.") and k.endswith(".weight")]
            config["sefn_scale"] = len(convs) + 1
        config["ffn_expansion_factor"] = _expansion_factor(state_dict, dim, config)
        return config


def _expansion_factor(state_dict: Mapping[str, torch.Tensor], dim: int, config: Mapping[str, Any]) -> float:
    """An ``ffn_expansion_factor`` that reproduces every level's FFN hidden width in ``state_dict``.

    A width w at c channels needs w <= c·factor < w + step (step = SEFN scale, or 1 for
    GDFN); the default 2.66 is returned when it fits, else the middle of the common range.
    """
    sefn = config["ffn"] == "sefn"
    step = config["sefn_scale"] if sefn else 1
    outputs_per_hidden = 1 if sefn else 2  # GDFN's project_in has 2·hidden outputs
    widths = {
        channels: state_dict[f"{level}.0.ffn.project_in.weight"].shape[0] // outputs_per_hidden
        for level, channels in zip(_LEVELS, (dim, dim * 2, dim * 4, dim * 8))
    }

    def fits(factor: float) -> bool:
        return all(step * int(c * factor / step) == w for c, w in widths.items())

    low = max(w / c for c, w in widths.items())
    high = min((w + step) / c for c, w in widths.items())
    for factor in (2.66, (low + high) / 2):
        if fits(factor):
            return factor
    raise ValueError(f"no ffn_expansion_factor gives the FFN hidden widths {widths} (channels: width)")

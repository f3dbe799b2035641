"""DRSformer: a sparse Transformer for image deraining.

X. Chen, H. Li, M. Li, J. Pan, "Learning A Sparse Transformer Network for Effective Image
Deraining", CVPR 2023. Official code: https://github.com/cschenxiang/DRSformer (commit
e77bbb4; ``basicsr/models/archs/DRSformer_arch.py`` and ``DRSformer_arch_200L+SPA.py``),
which has no licence file. This is an independent implementation that keeps the official
parameter names, so the released checkpoints load with ``strict=True``.

The network is Restormer's four-level U-Net with three changes: top-k sparse attention
(TKSA), a mixed-scale feed-forward network (MSFN), and two mixture-of-experts feature
compensators (MEFC) after the patch embedding and before the output. The official
Rain200L and SPA-Data models omit the MEFC sub-networks (``mefc=False``).
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
    cosine_scores,
    eager_inference,
    fast_layout,
    layer_norm_type_has_bias,
    merge_heads,
    restormer_shapes,
    split_heads,
)

# Fractions of the channels per head that the four sparse attention maps keep, in the
# official expressions (``int(C/2)``, ``int(C*2/3)``, ...) so the counts round identically.
_TOP_K_FRACTIONS = ((1, 2), (2, 3), (3, 4), (4, 5))


class TopKSparseAttention(nn.Module):
    """Top-k sparse channel attention (TKSA; official class ``Attention``).

    Scores are the C×C cosine similarities between the channels of q and k within a head,
    scaled by a learnt temperature. Four sparse copies keep the top ``int(C/2)``,
    ``int(2C/3)``, ``int(3C/4)``, ``int(4C/5)`` scores of each row, each is soft-maxed,
    and their products with v are summed with the free scalars ``attn1..attn4``.

    Instead of four masks, softmaxes and matmuls, one sorted top-k gives all four
    sparse maps: the row maximum is in every kept set, so with ``E = exp(top - max)`` the
    softmax denominator for count k is ``cumsum(E)[k-1]``. The weighted sum of the four
    maps is ``E · Σᵢ attnᵢ [rank < kᵢ] / denomᵢ`` scattered into a C×C matrix, which
    multiplies v once (``Σᵢ attnᵢ (Pᵢ v) = (Σᵢ attnᵢ Pᵢ) v``).
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels ({dim}) must be divisible by the head count ({num_heads})")
        head_channels = dim // num_heads
        if head_channels < 2:
            raise ValueError(
                f"{dim} channels with {num_heads} heads leave {head_channels} channel per head; "
                "top-k attention needs at least 2 (with 1 it keeps int(1/2) = 0 scores and the "
                "official code returns NaN)"
            )
        self.num_heads = num_heads
        self.top_k = tuple(int(head_channels * n / d) for n, d in _TOP_K_FRACTIONS)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        self.attn1 = nn.Parameter(torch.tensor([0.2]))
        self.attn2 = nn.Parameter(torch.tensor([0.2]))
        self.attn3 = nn.Parameter(torch.tensor([0.2]))
        self.attn4 = nn.Parameter(torch.tensor([0.2]))
        # rank r of a sorted top-k row belongs to sparse map i when r < k_i
        ranks = torch.arange(max(self.top_k))
        self.register_buffer(
            "_kept", ranks < torch.tensor(self.top_k).unsqueeze(1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = split_heads(self.qkv_dwconv(self.qkv(x)), self.num_heads)
        scores = cosine_scores(q, k, self.temperature)
        out = v.transpose(-2, -1) @ self.sparse_attention(scores).transpose(-2, -1)
        return self.project_out(merge_heads(out, h, w))

    def sparse_attention(self, scores: torch.Tensor) -> torch.Tensor:
        """Σᵢ attnᵢ · softmax(top-kᵢ of each row of ``scores``, others −inf), shape (..., C, C).

        One top-k and one cumulative sum serve the four maps; the official four masks and four
        softmaxes are :func:`derain.models.reference.drsformer_sparse_attention`.
        """
        top, index = torch.topk(scores, max(self.top_k), dim=-1)
        exp = torch.exp(top - top[..., :1])
        denominators = torch.cumsum(exp, dim=-1)[..., [k - 1 for k in self.top_k]]
        scalars = torch.cat([self.attn1, self.attn2, self.attn3, self.attn4])
        coefficients = (scalars / denominators) @ self._kept.to(scores.dtype)
        return torch.zeros_like(scores).scatter_(-1, index, exp * coefficients)


class MixedScaleFeedForward(nn.Module):
    """Mixed-scale feed-forward network (MSFN; official class ``FeedForward``).

    Parallel 3×3 and 5×5 depthwise paths; their halves are exchanged
    (``[a3, a5]`` and ``[b3, b5]``) and each mix goes through a grouped conv whose groups
    read two neighbouring channels (2g and 2g+1), as in the official code.

    PyTorch's CPU kernels for convs with two input channels per group are several times
    slower than depthwise ones, so ``_branch`` computes them as a depthwise conv followed
    by a sum of neighbouring channels: the same function.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv3x3 = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.dwconv5x5 = nn.Conv2d(hidden * 2, hidden * 2, 5, padding=2, groups=hidden * 2, bias=bias)
        self.dwconv3x3_1 = nn.Conv2d(hidden * 2, hidden, 3, padding=1, groups=hidden, bias=bias)
        self.dwconv5x5_1 = nn.Conv2d(hidden * 2, hidden, 5, padding=2, groups=hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden * 2, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The halves of project_in's output never meet before project_out, so each branch is
        # computed from x on its own and every map is dropped once used: at most three
        # half-width maps (plus the branch kept for the end) are alive instead of about seven
        # hidden-width ones (decoder level 1, the largest full-size stage, has 2x255 hidden
        # channels). Same values: convs treat output channels independently (conv_chunks).
        x1 = self._branch(x, 0, self.dwconv3x3_1)
        x2 = self._branch(x, 1, self.dwconv5x5_1)
        mixed = torch.cat([x1, x2], dim=1)
        del x1, x2
        return self.project_out(mixed)

    def _branch(self, x: torch.Tensor, index: int, pairwise: nn.Conv2d) -> torch.Tensor:
        """``relu(pairwise(cat[relu(dwconv3x3(h)), relu(dwconv5x5(h))]))`` with h = half ``index`` of project_in(x).

        The grouped ``pairwise`` conv (two input channels per group) runs as a depthwise conv
        on each part of the concatenation, which is never built, and the sums of neighbouring
        channels (:func:`_pair_sums`); each map is dropped as soon as it is used.
        """
        half = _conv_chunk(self.project_in, x, index)
        d3 = F.relu(_conv_chunk(self.dwconv3x3, half, index), inplace=True)
        d5 = F.relu(_conv_chunk(self.dwconv5x5, half, index), inplace=True)
        del half
        out_channels, _, kh, kw = pairwise.weight.shape
        kernels = pairwise.weight.view(2 * out_channels, 1, kh, kw)  # the depthwise form
        n = d3.shape[1]
        y3 = F.conv2d(d3, kernels[:n], padding=pairwise.padding, groups=n)
        del d3
        y5 = F.conv2d(d5, kernels[n:], padding=pairwise.padding, groups=2 * out_channels - n)
        del d5
        out = _pair_sums(y3, y5)
        if pairwise.bias is not None:
            out.add_(pairwise.bias.view(1, -1, 1, 1))
        return out.relu_()


def _conv_chunk(conv: nn.Conv2d, x: torch.Tensor, index: int) -> torch.Tensor:
    """``conv(x).chunk(2, dim=1)[index]``; for a depthwise ``conv``, ``x`` is that chunk of its input."""
    weight = conv.weight.chunk(2)[index]
    bias = conv.bias.chunk(2)[index] if conv.bias is not None else None
    groups = 1 if conv.groups == 1 else weight.shape[0]
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups)


def _empty_like_layout(x: torch.Tensor, channels: int) -> torch.Tensor:
    """An uninitialised (B, ``channels``, H, W) tensor in ``x``'s memory layout (channels-last or not)."""
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty((x.shape[0], channels, *x.shape[2:]), dtype=x.dtype, device=x.device, memory_format=layout)


def _pair_sums(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Channel g is ``c[2g] + c[2g+1]`` of ``c = cat([first, second], dim=1)``, without building c.

    When ``first`` has an odd number of channels, one pair straddles the two parts. Outside
    :func:`~derain.models.layers.eager_inference` (training, torch.compile), c is built.
    """
    n = first.shape[1]
    total = n + second.shape[1]
    if total % 2:
        raise ValueError(f"pair sums need an even number of channels, got {n} + {second.shape[1]}")
    if not eager_inference():
        whole = torch.cat([first, second], dim=1)
        return whole[:, 0::2] + whole[:, 1::2]
    out = _empty_like_layout(first, total // 2)
    m = n // 2  # pairs within first
    torch.add(first[:, 0 : 2 * m : 2], first[:, 1 : 2 * m : 2], out=out[:, :m])
    if n % 2:
        torch.add(first[:, n - 1 :], second[:, :1], out=out[:, m : m + 1])
    torch.add(second[:, n % 2 :: 2], second[:, n % 2 + 1 :: 2], out=out[:, m + n % 2 :])
    return out


class SparseTransformerBlock(nn.Module):
    """Pre-norm block: ``x + TKSA(norm1(x))``, then ``x + MSFN(norm2(x))``.

    Works in the memory layout :func:`fast_layout` picks (channels-last for float32 on
    CPU), converting its input only if needed. Residuals are added in place to the
    branch outputs (fresh conv results): at 512×512 and above each full-size tensor the
    allocator has to map and zero costs about as much as the arithmetic on it.
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, with_bias_norm: bool
    ) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, with_bias_norm)
        self.attn = TopKSparseAttention(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, with_bias_norm)
        self.ffn = MixedScaleFeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fast_layout(x)
        x = self.attn(self.norm1(x)).add_(x)
        return self.ffn(self.norm2(x)).add_(x)


# --- Mixture of experts feature compensator (MEFC) -------------------------------------
# Official names: ``subnet`` > ``layers`` = [``OALayer`` (ca_fc), ``GroupOLs`` (preprocess,
# _ops)] > ``OperationLayer`` (_ops, _out) > ``SepConv`` / ``DilConv`` (op).

_STEPS = 4
_NUM_EXPERTS = 8  # sep conv 1/3/5/7, dilated conv 3/5/7, 3×3 average pool


class _SeparableConv(nn.Module):
    """Official ``SepConv``: (depthwise k×k → 1×1) → ReLU → (depthwise k×k → 1×1)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.op = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=pad, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size, padding=pad, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _DilatedConv(nn.Module):
    """Official ``DilConv``: depthwise k×k with dilation 2 → 1×1."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(
                channels, channels, kernel_size, padding=kernel_size - 1, dilation=2,
                groups=channels, bias=False,
            ),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _ExpertStep(nn.Module):
    """One step (official ``OperationLayer``): the eight experts weighted per sample, fused by 1×1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self._ops = nn.ModuleList(
            [_SeparableConv(channels, k) for k in (1, 3, 5, 7)]
            + [_DilatedConv(channels, k) for k in (3, 5, 7)]
            + [nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)]
        )
        self._out = nn.Sequential(
            nn.Conv2d(channels * _NUM_EXPERTS, channels, 1, bias=False), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor, expert_weights: torch.Tensor) -> torch.Tensor:
        """``expert_weights`` is (B, 8); expert o's output is scaled by column o."""
        weights = expert_weights.view(*expert_weights.shape, 1, 1)
        if not eager_inference():
            # every expert ends in a conv or pool, whose fresh output can be scaled in place
            return self._out(torch.cat([op(x).mul_(weights[:, o : o + 1]) for o, op in enumerate(self._ops)], 1))
        # Inference: each expert's output is scaled straight into its slice of the
        # concatenation and dropped, so one expert's maps are alive at a time, not eight.
        channels = x.shape[1]
        mixed = _empty_like_layout(x, channels * _NUM_EXPERTS)
        for o, op in enumerate(self._ops):
            torch.mul(op(x), weights[:, o : o + 1], out=mixed[:, o * channels : (o + 1) * channels])
        return self._out(mixed)


class _ExpertGate(nn.Module):
    """Official ``OALayer``: global average pool → MLP → logits (B, steps, experts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        logits = _STEPS * _NUM_EXPERTS
        self.ca_fc = nn.Sequential(nn.Linear(channels, logits * 2), nn.ReLU(), nn.Linear(logits * 2, logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ca_fc(x.mean(dim=(2, 3))).view(-1, _STEPS, _NUM_EXPERTS)


class _ConvReLU(nn.Module):
    """Official ``ReLUConv`` (despite its name: 1×1 conv, then ReLU)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _ExpertSteps(nn.Module):
    """Official ``GroupOLs``: 1×1 conv + ReLU, then residual expert steps."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.preprocess = _ConvReLU(channels)
        self._ops = nn.ModuleList(_ExpertStep(channels) for _ in range(_STEPS))

    def forward(self, x: torch.Tensor, expert_weights: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        for step, layer in enumerate(self._ops):
            out = layer(x, expert_weights[:, step])
            # without autograd, in place on the step's fresh output (autograd needs it for the ReLU's gradient)
            x = (x + out).relu_() if torch.is_grad_enabled() else out.add_(x).relu_()
        return x


class MixtureOfExpertsCompensator(nn.Module):
    """MEFC (official class ``subnet``, one layer of four steps).

    A gate computes per-sample softmax weights over eight CNN experts for each step from
    the globally pooled features; each step mixes the weighted expert outputs with a 1×1
    conv and adds them residually. Works in :func:`fast_layout`, like the blocks.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_ExpertGate(channels), _ExpertSteps(channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, steps = self.layers
        x = fast_layout(x)
        return steps(x, torch.softmax(gate(x), dim=-1))


_CARD = ModelCard(
    name="drsformer",
    paper=(
        "X. Chen, H. Li, M. Li, J. Pan. Learning A Sparse Transformer Network for Effective "
        "Image Deraining. CVPR 2023, pp. 5896-5905."
    ),
    official_repo="https://github.com/cschenxiang/DRSformer",
    licence="no licence file in the official repository",
    size_multiple=8,
    min_size=8,
    batch_independent=True,
    num_outputs=1,
    half_precision=False,
    tiling=Tiling.DISCOURAGED,
    official_protocol="drsformer",
    tiling_notes=(
        "Channel attention is global over the image, so tiles change the result; the "
        "official test.py runs whole images, or optional tiles (multiple of 8) with 32 px "
        "overlap averaged uniformly. derain's default tile is the largest the free memory holds, "
        "at least 256 px (the fastest per megapixel on CPUs: tile=256); tile=None runs whole "
        "images, closest to the paper."
    ),
    recipe="configs/drsformer.yaml",
    tiny_config={"dim": 8, "num_blocks": [1, 1, 1, 1], "heads": [1, 2, 2, 4]},
    paper_results={
        "Rain200L": (41.23, 0.9894),
        "Rain200H": (32.17, 0.9326),
        "DID-Data": (35.35, 0.9646),
        "DDN-Data": (34.35, 0.9588),
        "SPA-Data": (48.54, 0.9924),
    },
    notes=(
        "mefc=True is the official DRSformer_arch.py (Rain200H, DID-Data, DDN-Data "
        "checkpoints); mefc=False is DRSformer_arch_200L+SPA.py (Rain200L, SPA-Data). "
        "Paper results are Table 1 of the camera-ready paper (MATLAB, Y channel). "
        "Half precision: float32 is recommended; like Restormer, the layer-norm statistics "
        "can overflow in float16, and bfloat16 near-ties change which scores top-k keeps."
    ),
)


@register_model(_CARD)
class DRSformer(RestormerUNet):
    """DRSformer (CVPR 2023) with the official constructor; ``mefc`` picks the official file.

    Input: RGB (B, 3, H, W) in [0, 1], H and W multiples of 8. Output: the derained image,
    same shape (the network predicts a residual that is added to the input).
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803  (official argument name)
        mefc: bool = True,
    ) -> None:
        with_bias_norm = layer_norm_type_has_bias(LayerNorm_type)

        def block(channels: int, num_heads: int) -> SparseTransformerBlock:
            return SparseTransformerBlock(channels, num_heads, ffn_expansion_factor, bias, with_bias_norm)

        super().__init__(block, inp_channels, out_channels, dim, num_blocks, heads, bias)
        if mefc:
            self.encoder_level0 = MixtureOfExpertsCompensator(dim)
            self.refinement = MixtureOfExpertsCompensator(dim * 2)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        return super().forward(inp_img)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Constructor arguments of the model that produced ``state_dict`` (official keys)."""
        stages = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
        config = restormer_shapes(state_dict, stages)
        dim = config["dim"]
        heads = [state_dict[f"{stage}.0.attn.temperature"].shape[0] for stage in stages]
        hidden = [
            state_dict[f"{stage}.0.ffn.dwconv3x3_1.weight"].shape[0] for stage in stages
        ]
        widths = [dim * 2**level for level in range(4)]
        for factor in (2.66, hidden[0] / dim):
            if all(int(c * factor) == n for c, n in zip(widths, hidden)):
                break
        else:
            raise ValueError(
                f"no ffn_expansion_factor gives the feed-forward widths {hidden} "
                f"for channels {widths}"
            )
        return {
            **config,
            "heads": heads,
            "ffn_expansion_factor": factor,
            "LayerNorm_type": "WithBias" if "encoder_level1.0.norm1.body.bias" in state_dict else "BiasFree",
            "mefc": "encoder_level0.layers.0.ca_fc.0.weight" in state_dict,
        }

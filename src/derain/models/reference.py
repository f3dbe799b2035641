"""The papers' formulas as the official code writes them, beside derain's fast forms.

Each function computes a block the slow, literal way (explicit masks, one softmax per sparse
map, F.normalize on the full maps, the FFT stage through fft2/ifft2); the models compute the
same values with fewer passes over memory. The tests compare the two, values and gradients,
so a reader can check each rewrite against the formula it replaces.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .cpraformer import CrossParadigmAttention, FourierAffine
from .ddsaformer import DynamicDualAttention


def masked_softmax(scores: torch.Tensor, k: int, fill: float = float("-inf")) -> torch.Tensor:
    """Softmax after setting all but the ``k`` largest scores of each row to ``fill``, with a 0/1 mask."""
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(k, dim=-1).indices, True)
    return torch.where(keep, scores, torch.full_like(scores, fill)).softmax(dim=-1)


def drsformer_sparse_attention(scores: torch.Tensor, top_k: Sequence[int], scalars: Sequence[torch.Tensor]) -> torch.Tensor:
    """DRSformer's top-k attention weights: four masks, four softmaxes, summed with the four scalars
    (fast form: :meth:`derain.models.drsformer.TopKSparseAttention.sparse_attention`, one top-k)."""
    total = torch.zeros_like(scores)
    for k, scalar in zip(top_k, scalars):
        total = total + scalar * masked_softmax(scores, k)
    return total


def cpraformer_attention(attn: CrossParadigmAttention, x: torch.Tensor) -> torch.Tensor:
    """The official DAIT ``Attention.forward`` (zs1314/DAIT, models/DAIT.py + my_fft.py) as written
    there: -inf mask, four identical products, fft2 → depthwise 1×1 on [Re, Im] → ifft2."""
    b, _, h, w = x.shape
    y, x = attn.linear_0(x).chunk(2, dim=1)
    y_d = attn.spr_sa(y)
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
    q, k, v = (t.reshape(b, attn.num_heads, -1, h * w) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    c = q.shape[2]
    dynamic_k = int(c * attn.gate(x).view(b, -1).mean())
    scores = (q @ k.transpose(-2, -1)) * attn.temperature
    mask = torch.zeros_like(scores).scatter_(-1, torch.topk(scores, k=dynamic_k, dim=-1)[1], 1.0)
    scores = torch.where(mask > 0, scores, torch.full_like(scores, float("-inf"))).softmax(dim=-1)
    out = sum((scores @ v) * a for a in (attn.attn1, attn.attn2, attn.attn3, attn.attn4))
    out = out.reshape(b, -1, h, w)
    z = torch.cat(
        [
            out * torch.sigmoid(attn.spatial_interaction(y_d)),
            y_d * torch.sigmoid(attn.channel_interaction(out)),
        ],
        dim=1,
    )
    return cpraformer_fourier_stage(attn.fft, attn.project_out(z))


def cpraformer_fourier_stage(fft: FourierAffine, z: torch.Tensor) -> torch.Tensor:
    """DAIT's frequency stage: fft2, a 1×1 conv over [Re, Im], ifft2 (fast form: :class:`FourierAffine`, closed form)."""
    spectrum = torch.fft.fft2(z, dim=(-2, -1))
    mixed = fft.conv1x1["conv"](torch.cat([spectrum.real, spectrum.imag], dim=1))
    real, imag = mixed.chunk(2, dim=1)
    return torch.fft.ifft2(torch.complex(real, imag), dim=(-2, -1)).real


def ddsaformer_attention(attn: DynamicDualAttention, x: torch.Tensor) -> torch.Tensor:
    """DDSAformer's dual attention, the paper's formula written out with F.normalize and an explicit 0/1 mask."""
    b, c, h, w = x.shape
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
    q, k, v = (t.reshape(b, attn.num_heads, c // attn.num_heads, h * w) for t in (q, k, v))
    scores = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * attn.temperature
    sparse = masked_softmax(scores, attn.top_k, attn.fill)
    out = 0
    if attn.dense_weight is not None:
        out = out + attn.dense_weight * (scores.softmax(dim=-1) @ v)
    if attn.sparse_weight is not None:
        out = out + attn.sparse_weight * (sparse @ v)
    return attn.project_out(out.reshape(b, c, h, w))

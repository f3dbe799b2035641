"""Losses of the published recipes, as ordinary modules taking ``(restored, clean)``.

``restored`` is a model's output: a Tensor, or for DMSR a tuple finest first (full, 1/2,
1/4). Images are (B, 3, H, W) in [0, 1]; every loss returns a scalar mean.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Output = torch.Tensor | Sequence[torch.Tensor]


def _single(restored: Output, loss: str) -> torch.Tensor:
    if isinstance(restored, torch.Tensor):
        return restored
    raise ValueError(f"the {loss} loss takes one output, the model returned {len(restored)}; use multiscale_l1_fft")


class L1Loss(nn.Module):
    """Mean absolute error (DRSformer, DDSAformer)."""

    def forward(self, restored: Output, clean: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(_single(restored, "l1"), clean)


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(√((x − y)² + eps²)), a differentiable L1 (MPRNet/DAIT ``CharbonnierLoss``)."""
    diff = x - y
    return torch.sqrt(diff * diff + eps * eps).mean()


class EdgeLoss(nn.Module):
    """Charbonnier distance between Laplacian-pyramid detail images (MPRNet/DAIT ``EdgeLoss``).

    The detail image is ``x − blur(upsample(downsample(blur(x))))``, with a 5×5 binomial-like
    Gaussian from [.05, .25, .4, .25, .05], replicate padding, and the down/upsampling done by
    keeping every second pixel (×4 on a zero canvas), as in the official code.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        taps = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
        kernel = torch.outer(taps, taps).expand(channels, 1, 5, 5).contiguous()
        self.register_buffer("kernel", kernel, persistent=False)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), groups=x.shape[1])

    def _detail(self, x: torch.Tensor) -> torch.Tensor:
        blurred = self._blur(x)
        canvas = torch.zeros_like(blurred)
        canvas[:, :, ::2, ::2] = blurred[:, :, ::2, ::2] * 4
        return x - self._blur(canvas)

    def forward(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return charbonnier(self._detail(restored), self._detail(clean))


class CharbonnierEdgeLoss(nn.Module):
    """CPRAformer: Charbonnier + ``edge_weight`` × :class:`EdgeLoss` (DAIT ``train.py``)."""

    def __init__(self, edge_weight: float = 0.05) -> None:
        super().__init__()
        self.edge_weight = edge_weight
        self.edge = EdgeLoss()

    def forward(self, restored: Output, clean: torch.Tensor) -> torch.Tensor:
        restored = _single(restored, "charbonnier_edge")
        return charbonnier(restored, clean) + self.edge_weight * self.edge(restored, clean)


def fft_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between the real and imaginary parts of the 2-D FFTs (DMSR's frequency loss)."""
    fx, fy = torch.fft.fft2(x.float()), torch.fft.fft2(y.float())
    return F.l1_loss(torch.stack((fx.real, fx.imag), -1), torch.stack((fy.real, fy.imag), -1))


class MultiScaleL1FFTLoss(nn.Module):
    """DMSR: Σ_s L1(out_s, clean_s) + ``fft_weight`` × Σ_s FFT-L1(out_s, clean_s).

    The outputs are full, 1/2 and 1/4 resolution; the clean targets at 1/2 and 1/4 are
    bilinear resizes (``align_corners=False``), as in the official ``train.py``.
    """

    def __init__(self, fft_weight: float = 0.1) -> None:
        super().__init__()
        self.fft_weight = fft_weight

    def forward(self, restored: Output, clean: torch.Tensor) -> torch.Tensor:
        outputs = [restored] if isinstance(restored, torch.Tensor) else list(restored)
        spatial = frequency = clean.new_zeros(())
        for out in outputs:
            target = clean
            if out.shape[-2:] != clean.shape[-2:]:
                scale = out.shape[-1] / clean.shape[-1]
                target = F.interpolate(clean, scale_factor=scale, mode="bilinear", align_corners=False)
            spatial = spatial + F.l1_loss(out, target)
            frequency = frequency + fft_l1(out, target)
        return spatial + self.fft_weight * frequency


# ``loss.name`` of a training config -> the loss built from the config's weights; the config's
# allowed values are these keys
LOSSES: dict[str, Callable[[float, float], nn.Module]] = {
    "l1": lambda edge_weight, fft_weight: L1Loss(),
    "charbonnier_edge": lambda edge_weight, fft_weight: CharbonnierEdgeLoss(edge_weight),
    "multiscale_l1_fft": lambda edge_weight, fft_weight: MultiScaleL1FFTLoss(fft_weight),
}


def build_loss(name: str, *, edge_weight: float = 0.05, fft_weight: float = 0.1) -> nn.Module:
    """The loss called ``name`` in a training config (``loss.name``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    return LOSSES[name](edge_weight, fft_weight)

"""Image quality metrics: the papers' MATLAB PSNR/SSIM protocols, tensor metrics for training,
and the no-reference NIQE and BRISQUE used on real rainy photos."""

from .brisque import brisque
from .matlab import PROTOCOLS, psnr_ssim_matlab
from .niqe import niqe
from .tensor import PSNR, SSIM, psnr, rgb_to_y, ssim

__all__ = ["PROTOCOLS", "PSNR", "SSIM", "brisque", "niqe", "psnr", "psnr_ssim_matlab", "rgb_to_y", "ssim"]

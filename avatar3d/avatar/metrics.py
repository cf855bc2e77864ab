"""Image metrics of the avatar's training and evaluation: PSNR and SSIM (differentiable, batched).

SSIM is Wang et al. 2004 with the standard 11 x 11 Gaussian window (sigma 1.5), ``K1 = 0.01``,
``K2 = 0.03`` and population (not sample) covariances, averaged over the pixels whose whole window lies
inside the image and over the channels: the numbers of scikit-image's
``structural_similarity(a, b, data_range=..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` (scikit-image crops the same 5-pixel border before averaging, so its
padding never matters; tested against it where it is installed).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as tF
from torch import Tensor

__all__ = ["psnr", "ssim", "ssim_map", "gaussian_window"]

WINDOW = 11
SIGMA = 1.5


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32) -> Tensor:
    """(size,) normalised 1D Gaussian weights (the separable SSIM window)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def _blur(x: Tensor, w: Tensor) -> Tensor:
    """'valid' separable filtering of (B, C, H, W) with the 1D window ``w`` (k,) -> (B, C, H-k+1, W-k+1)."""
    C, k = x.shape[1], w.numel()
    x = tF.conv2d(x, w.view(1, 1, 1, k).expand(C, 1, 1, k), groups=C)
    return tF.conv2d(x, w.view(1, 1, k, 1).expand(C, 1, k, 1), groups=C)


def ssim_map(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-pixel SSIM of images (B, H, W, C) (or (H, W, C)) -> (B, H-10, W-10, C) (the window's valid part)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = (t if t.ndim == 4 else t[None] for t in (a, b))
    if min(x.shape[1:3]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW} x {WINDOW} pixels, got {tuple(x.shape[1:3])}")
    x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    w = gaussian_window(dtype=x.dtype).to(x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, w), _blur(y, w)
    vx = _blur(x * x, w) - mx * mx
    vy = _blur(y * y, w) - my * my
    cxy = _blur(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.permute(0, 2, 3, 1)


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, per_image: bool = False) -> Tensor:
    """Mean SSIM of (B, H, W, C) images: a scalar, or (B,) with ``per_image``."""
    s = ssim_map(a, b, data_range)
    return s.mean(dim=(1, 2, 3)) if per_image else s.mean()


def psnr(a: Tensor, b: Tensor, mask: Optional[Tensor] = None, data_range: float = 1.0) -> Tensor:
    """PSNR in dB of (..., H, W, C) images (values in [0, ``data_range``]); over ``mask`` (..., H, W) pixels
    when given (the squared error averaged over those pixels and the channels)."""
    err = (a - b).square()
    if mask is None:
        mse = err.mean()
    else:
        m = mask.to(err.dtype)[..., None].expand_as(err)
        mse = (err * m).sum() / m.sum().clamp_min(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))

"""Scoring a Gaussian head avatar on held-out frames: :func:`evaluate_avatar` (PSNR / SSIM of its renders over white
against the masked crops over white, pixels the video never showed whited out in both).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .dataset import FrameSet
from .metrics import psnr, ssim
from .model import GaussianHead

__all__ = ["evaluate_avatar"]


@torch.no_grad()
def evaluate_avatar(avatar: GaussianHead, frames: FrameSet, backend: str = "auto") -> dict[str, Any]:
    """Scores of ``avatar`` on ``frames`` (rendered one by one over white against the masked crops over white).

    Returns:
        ``psnr`` (dB, over every pixel of every frame), ``ssim`` (mean over frames), ``psnr_mask`` (dB over the
        masks' pixels, mask > 0.5), and per frame ``psnr_frames`` / ``ssim_frames`` (n,) arrays.
    """
    se, sm, n_pix, n_mask, ps, ss = 0.0, 0.0, 0, 0, [], []
    for i in range(len(frames)):
        rows = torch.tensor([i])
        img = avatar(frames.expression[rows], frames.pose[rows], frames.transl[rows], frames.camera(rows), backend=backend).image
        img = frames.seen(rows, img).clamp(0, 1)
        tgt = frames.targets(rows)
        err = (img - tgt).square()
        m = frames.masks[rows] > 127
        se += float(err.sum())
        sm += float(err[m].sum())
        n_pix += err.numel()
        n_mask += int(m.sum()) * 3
        ps.append(float(psnr(img, tgt)))
        ss.append(float(ssim(img, tgt)))
    return {"psnr": 10 * math.log10(n_pix / max(se, 1e-20)), "ssim": float(np.mean(ss)),
            "psnr_mask": 10 * math.log10(max(n_mask, 1) / max(sm, 1e-20)), "psnr_frames": np.asarray(ps), "ssim_frames": np.asarray(ss)}

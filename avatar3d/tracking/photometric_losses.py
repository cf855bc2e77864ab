"""Loss terms and error measures of the photometric refinement (:mod:`avatar3d.tracking.photometric`).

The renderer itself is general (:mod:`avatar3d.render.head`); what the refinement compares, and how,
is tracking policy and lives here, as functions of tensors (the refinement's objective weighs them).
Shapes: B frames in a batch, r x r render resolution, T x T texture.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..render.head import HeadRenderer

__all__ = ["face_box", "masked_errors", "photo_term", "silhouette_term", "landmark_term", "texture_tv", "second_difference"]


def face_box(pos: Tensor, region: Tensor, r: int, margin: float) -> Tensor:
    """(B,r,r,1) 0/1 box around the projected ``region`` vertices (pos (B,V,4) clip), grown by ``margin`` x its size."""
    with torch.no_grad():
        px = (pos[..., :2] / pos[..., 3:4].clamp_min(1e-6) + 1) * 0.5 * r  # continuous pixel coordinates
        p = px[:, region]
        lo, hi = p.min(1).values, p.max(1).values  # (B,2)
        pad = (hi - lo) * margin
        lo, hi = lo - pad, hi + pad
        c = torch.arange(r, dtype=pos.dtype) + 0.5
        inx = (c[None] >= lo[:, :1]) & (c[None] <= hi[:, :1])
        iny = (c[None] >= lo[:, 1:]) & (c[None] <= hi[:, 1:])
        return (iny[:, :, None] & inx[:, None, :]).float()[..., None]




def masked_errors(rend: HeadRenderer, raster_a, app_a: tuple[Tensor, Tensor], raster_b, app_b: tuple[Tensor, Tensor],
                  img: Tensor, msk: Tensor, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean |render - image| in grey levels (0..255) of two fits, on one shared pixel set.

    Each fit is rendered with its own appearance ``(albedo (T,T,3), sh (9,3))``; ``raster_a(idx)`` /
    ``raster_b(idx)`` give the :meth:`HeadRenderer.raster` passes of its geometry (e.g. :class:`RasterCache`).
    The pixel set is the person mask intersected with the union of both renders' face-region
    footprints, so neither fit chooses where it is judged.
    """
    N = img.shape[0]
    ea, eb = np.zeros(N), np.zeros(N)
    with torch.no_grad():
        for s in range(0, N, batch):
            idx = np.arange(s, min(N, s + batch))
            ra, rb = raster_a(idx), raster_b(idx)
            ia, ib = rend.shade(ra, *app_a)[0], rend.shade(rb, *app_b)[0]
            w = (torch.maximum(ra["region"], rb["region"]) > 0.5).float() * (msk[idx] > 0.5).float()
            den = w.sum((1, 2, 3)).clamp_min(1.0)
            for e, im in ((ea, ia), (eb, ib)):
                e[idx] = ((im - img[idx]).abs().mean(-1, keepdim=True) * w).sum((1, 2, 3)).div(den).numpy() * 255.0
    return ea, eb


def photo_term(image: Tensor, target: Tensor, region: Tensor, mask: Tensor) -> Tensor:
    """Mean over frames of the robust (Charbonnier) colour distance on face-region person pixels.

    image, target (B,r,r,3) in [0,1]; region (B,r,r,1) rendered region weight; mask (B,r,r,1) person mask.
    """
    w = region * (mask > 0.5).float()
    diff = torch.sqrt((image - target).pow(2).sum(-1, keepdim=True) + 1e-6)
    return ((diff * w).sum((1, 2, 3)) / w.sum((1, 2, 3)).clamp_min(1.0)).mean()


def silhouette_term(alpha: Tensor, mask: Tensor, box: Tensor) -> Tensor:
    """Mean over frames of the rendered coverage where the mask says background, inside ``box``, per box pixel.

    One-sided: hair and shoulders (which the model lacks) must not pull the head. alpha, mask, box (B,r,r,1).
    """
    outside = alpha * (1 - mask) * box
    return (outside.sum((1, 2, 3)) / box.sum((1, 2, 3)).clamp_min(1.0)).mean()


def landmark_term(uv: Tensor, target: Tensor, iod: Tensor, valid: Tensor, delta: float) -> Tensor:
    """Robust (Charbonnier, transition ``delta``) landmark distance in inter-ocular units, mean over valid frames.

    uv, target (B,P,2) crop pixels; iod (B,) crop pixels; valid (B,) 0/1.
    """
    d = (uv - target).norm(dim=-1) / iod[:, None]
    rob = torch.sqrt(d * d + delta**2) - delta
    return (rob.mean(-1) * valid).sum() / valid.sum().clamp_min(1.0)


def texture_tv(tex: Tensor) -> Tensor:
    """Squared total variation of a (T,T,C) texture (mean over both directions' differences)."""
    return (tex[1:] - tex[:-1]).pow(2).mean() + (tex[:, 1:] - tex[:, :-1]).pow(2).mean()


def second_difference(x: Tensor) -> Tensor:
    """Mean squared second difference along frames of (B, ...) x (0 for B < 3)."""
    if x.shape[0] < 3:
        return x.new_zeros(())
    return (x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).flatten(1).sum(-1).mean()

"""Losses and error measures of the photometric refinement (:mod:`avatar3d.tracking.photometric`).

The renderer itself is general (:mod:`avatar3d.render.head`); what the refinement compares, and how,
is tracking policy and lives here. Shapes: B frames in a batch, r x r render resolution.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..render.head import HeadRenderer

__all__ = ["face_box", "masked_errors"]


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

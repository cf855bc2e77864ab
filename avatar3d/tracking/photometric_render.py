"""Rendering helpers of the photometric refinement: textured SH-lit head, albedo initialisation, errors.

Everything here is built from the differentiable mesh ops in :mod:`avatar3d.render.mesh`
(rasterize -> interpolate -> texture -> antialias). Shapes: B frames in a batch, V vertices,
r x r render resolution, T x T albedo texture.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from typing import Optional

from ..models.base import HeadModel
from ..render.camera import world_to_clip
from ..render.mesh import antialias, interpolate, rasterize, texture, triangle_adjacency
from ..render.shading import SH_C, sh_irradiance, vertex_normals

__all__ = ["HeadRenderer", "front_triangles", "white_sh", "face_box", "backproject_albedo", "masked_errors"]


class HeadRenderer:
    """Renders the posed head with an albedo texture and SH lighting at ``r`` x ``r`` pixels.

    Args:
        model: the head model (needs ``uvs`` / ``uv_faces``).
        K: (N, 3, 3) crop intrinsics in crop pixels (OpenCV, pixel centres at integers).
        world_to_cam: (4, 4) OpenCV extrinsics shared by all frames.
        crop: crop side in pixels; r: render side in pixels.
        region: model region whose pixels are compared (weight channel of :meth:`raster`).
    """

    def __init__(self, model: HeadModel, K: Tensor, world_to_cam: Tensor, crop: int, r: int, region: str = "face",
                 crop_margin: Optional[float] = 0.15):
        self.model, self.r = model, int(r)
        self.region_idx = model.region(region)
        keep = front_triangles(model, crop_margin) if crop_margin is not None else slice(None)
        self.faces = model.faces[keep].contiguous()
        self.tri = self.faces.to(torch.int32).contiguous()
        self.uv_tri = model.uv_faces[keep].to(torch.int32).contiguous()
        uv = model.uvs.float()
        self.uv = torch.stack([uv[:, 0], 1 - uv[:, 1]], -1).contiguous()  # OBJ origin bottom-left -> row 0 at the top
        self.adj = triangle_adjacency(self.tri)
        self.region_w = self.region_idx.float()[:, None]  # (V,1)
        Kr = K.clone().float()
        # K has pixel centres at integers; the rasterizer samples pixel centres at +0.5.
        Kr[:, 0, 2] += 0.5
        Kr[:, 1, 2] += 0.5
        Kr[:, :2] *= self.r / float(crop)
        self.K = Kr
        self.w2c = world_to_cam.float()

    def normals(self, verts: Tensor) -> Tensor:
        """(B,V,3) unit vertex normals in the camera frame, no gradient."""
        with torch.no_grad():
            return vertex_normals(verts.detach(), self.faces) @ self.w2c[:3, :3].T

    def raster(self, verts: Tensor, idx: np.ndarray, normals: Optional[Tensor] = None) -> dict:
        """Geometry-only pass for frames ``idx``: clip positions, rast, texture uv, camera normals, region weight.

        ``normals`` (B,V,3) from :meth:`normals` may be passed to reuse them across steps: they
        carry no gradient (shading is a weak, noisy cue for geometry at this resolution, and their
        scatter-adds cost a fifth of a step) and barely change within a few steps.
        """
        pos = world_to_clip(verts, self.K[idx], self.w2c, self.r, self.r)
        rast, _ = rasterize(pos, self.tri, (self.r, self.r))
        uvp = interpolate(self.uv, rast, self.uv_tri)[0]
        n_cam = self.normals(verts) if normals is None else normals
        attrs = torch.cat([n_cam, self.region_w[None].expand(verts.shape[0], -1, -1)], -1).contiguous()
        pix = interpolate(attrs, rast, self.tri)[0]
        cover = (rast[..., 3:4] > 0).float()
        return dict(pos=pos, rast=rast, uv=uvp, normal=torch.nn.functional.normalize(pix[..., :3], dim=-1, eps=1e-12),
                    region=pix[..., 3:4].detach().clamp(0, 1) * cover, cover=cover)

    def shade(self, ras: dict, tex: Tensor, sh: Tensor) -> tuple[Tensor, Tensor]:
        """(B,r,r,3) antialiased image on black and (B,r,r,1) antialiased coverage from a :meth:`raster` pass."""
        albedo = texture(tex[None], ras["uv"], filter_mode="linear", boundary_mode="clamp")
        shaded = albedo * sh_irradiance(ras["normal"], sh) * ras["cover"]
        # One antialias call for colour and coverage: both get silhouette-edge gradients to pos.
        aa = antialias(torch.cat([shaded, ras["cover"]], -1).contiguous(), ras["rast"], ras["pos"], self.tri, self.adj)
        return aa[..., :3], aa[..., 3:4]


def front_triangles(model: HeadModel, margin: float) -> Tensor:
    """(F,) bool: triangles near the front of the face, the only ones the refinement needs to draw.

    Keeps triangles with a vertex inside the rest-pose box of the 478 MediaPipe landmarks (the face
    proper, the same for every model), grown by ``margin`` x its size in x/y and reaching half its
    depth range further back, which keeps the eyeballs and the front of the mouth interior that occlude
    the face. Teeth are dropped: they only show inside the mouth, which is not compared. Scalp, neck
    and the back of the head are hidden behind the face or covered by hair (masked out) in the views
    a face tracker sees.
    """
    with torch.no_grad():
        lm = model(None, None, None).landmarks[0]
    v = model.v_template
    lo, hi = lm.min(0).values, lm.max(0).values
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    lo[2] = lm[:, 2].min() - 0.5 * (hi[2] - lo[2])
    hi[2] = float("inf")
    inside = ((v >= lo) & (v <= hi)).all(1)
    keep = inside[model.faces].any(1)
    if "teeth" in model.region_names:
        keep &= ~model.region("teeth")[model.faces].all(1)
    return keep


def white_sh() -> Tensor:
    """(9,3) SH lighting with irradiance 1 for every normal (constant band only)."""
    sh = torch.zeros(9, 3)
    sh[0] = 1.0 / SH_C[0]
    return sh


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


def backproject_albedo(rend: HeadRenderer, verts_fn, img: Tensor, msk: Tensor, size: int, batch: int) -> Tensor:
    """(size,size,3) albedo: mean of the crop pixels each texel sees (interior of the mask), holes filled smoothly.

    ``verts_fn(idx) -> (B,V,3)`` gives the geometry of frames ``idx``; img (N,r,r,3), msk (N,r,r,1) in [0,1].
    A good start lets few appearance iterations suffice.
    """
    import cv2

    acc = torch.zeros(size * size, 3, dtype=torch.float64)
    cnt = torch.zeros(size * size, dtype=torch.float64)
    N = img.shape[0]
    with torch.no_grad():
        for s in range(0, N, batch):
            idx = np.arange(s, min(N, s + batch))
            ras = rend.raster(verts_fn(idx), idx)
            ok = (ras["rast"][..., 3] > 0) & (msk[idx, ..., 0] > 0.99)  # interior: no background bleeding in
            t = ras["uv"][ok].clamp(0, 1 - 1e-6)
            ti = (t[:, 1] * size).long() * size + (t[:, 0] * size).long()
            acc.index_add_(0, ti, img[idx][ok].double())
            cnt.index_add_(0, ti, torch.ones_like(ti, dtype=torch.float64))
    if cnt.sum() == 0:
        return torch.full((size, size, 3), 0.5)
    acc_np, cnt_np = acc.view(size, size, 3).numpy(), cnt.view(size, size).numpy()
    out = np.where(cnt_np[..., None] > 0, acc_np / np.maximum(cnt_np, 1)[..., None], 0.0)
    filled = cnt_np > 0
    mean = acc_np.sum((0, 1)) / cnt_np.sum()
    for sigma in (1.5, 4.0, 12.0, 40.0):  # push-pull style: ever wider normalised blurs fill the holes
        if filled.all():
            break
        k = int(6 * sigma) | 1
        num = cv2.GaussianBlur(np.ascontiguousarray(out * filled[..., None]), (k, k), sigma)
        den = cv2.GaussianBlur(filled.astype(np.float64), (k, k), sigma)
        grow = (~filled) & (den > 1e-3)
        out[grow] = num[grow] / den[grow][:, None]
        filled = filled | grow
    out[~filled] = mean
    return torch.as_tensor(out, dtype=torch.float32).clamp(0, 1)


def masked_errors(rend: HeadRenderer, verts_a, app_a: tuple[Tensor, Tensor], verts_b, app_b: tuple[Tensor, Tensor],
                  img: Tensor, msk: Tensor, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean |render - image| in grey levels (0..255) of two fits, on one shared pixel set.

    Each fit is rendered with its own appearance ``(albedo (T,T,3), sh (9,3))``; ``verts_a(idx)`` /
    ``verts_b(idx)`` give (B,V,3) geometry. The pixel set is the person mask intersected with the
    union of both renders' face-region footprints, so neither fit chooses where it is judged.
    """
    N = img.shape[0]
    ea, eb = np.zeros(N), np.zeros(N)
    with torch.no_grad():
        for s in range(0, N, batch):
            idx = np.arange(s, min(N, s + batch))
            ra, rb = rend.raster(verts_a(idx), idx), rend.raster(verts_b(idx), idx)
            ia, ib = rend.shade(ra, *app_a)[0], rend.shade(rb, *app_b)[0]
            w = (torch.maximum(ra["region"], rb["region"]) > 0.5).float() * (msk[idx] > 0.5).float()
            den = w.sum((1, 2, 3)).clamp_min(1.0)
            for e, im in ((ea, ia), (eb, ib)):
                e[idx] = ((im - img[idx]).abs().mean(-1, keepdim=True) * w).sum((1, 2, 3)).div(den).numpy() * 255.0
    return ea, eb

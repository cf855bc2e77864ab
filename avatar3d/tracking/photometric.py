"""Photometric refinement: per-sequence albedo texture + SH lighting, per-frame expression/pose.

After landmark fitting, the tracked head is rendered with the project's differentiable mesh
rasterizer (:func:`avatar3d.render.preview.render_mesh`) and compared with the crops:

* photometric term: L1 between render and image on face-region pixels the segmentation marks
  as person (hair, glasses, background excluded by the masks);
* silhouette term: rendered head coverage outside the person mask (the head must lie inside it);
* landmark term: keeps the refined fit on the detected landmarks (robust, as in fitting);
* priors: expression/pose stay near the landmark fit; albedo smoothness.

Phase 1 fits albedo + lighting with the landmark-only geometry (that is the baseline error);
phase 2 refines geometry jointly. Runs on minibatches of frames at a reduced resolution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..models.base import HeadModel
from ..render.shading import SH_C

__all__ = ["PhotometricConfig", "PhotometricResult", "refine_photometric"]


@dataclass
class PhotometricConfig:
    resolution: int = 128  #: render size (crops are downsampled to it)
    texture_size: int = 128
    iters_appearance: int = 60  #: phase 1: albedo + SH with landmark-only geometry
    iters_joint: int = 60  #: phase 2: + per-frame expression / rotation / translation
    batch: int = 4
    w_silhouette: float = 0.5
    w_landmarks: float = 1.0
    w_stay: float = 1.0  #: keep geometry near the landmark fit
    lr: float = 0.02
    refine_geometry: bool = True  #: False: phase 2 refines appearance only (the fair baseline)
    seed: int = 0


@dataclass
class PhotometricResult:
    expression: np.ndarray  #: (N, E) refined
    pose: np.ndarray  #: (N, J, 3)
    transl: np.ndarray  #: (N, 3)
    albedo: np.ndarray  #: (T, T, 3) in [0, 1], row 0 = top (v = 1)
    sh: np.ndarray  #: (9, 3) camera-frame SH lighting
    error_landmark_only: float  #: masked mean |render - image| after phase 1 (0-1 intensity)
    error_refined: float  #: after phase 2
    timings: dict = field(default_factory=dict)


def _face_index(model: HeadModel) -> Tensor:
    """(F,) bool: triangles whose three vertices are in the 'face' region (skin the crops show)."""
    face = model.region("face") if "face" in model.region_names else torch.ones(model.num_vertices, dtype=torch.bool)
    return face[model.faces].all(1)


def refine_photometric(model: HeadModel, images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, valid: np.ndarray,
                       shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, transl: np.ndarray, K: np.ndarray,
                       world_to_cam: np.ndarray, config: Optional[PhotometricConfig] = None) -> PhotometricResult:
    """Refine a landmark fit photometrically (see module docstring).

    Args:
        images: (N, H, W, 3) uint8 crops; masks: (N, H, W) uint8/float person masks.
        landmarks: (N, 478, 2) detected, crop pixels; valid: (N,) bool.
        shape (S,), expression (N, E), pose (N, J, 3), transl (N, 3): the landmark fit.
        K: (N, 3, 3) crop intrinsics (pixel centres at integers); world_to_cam: (4, 4).
    """
    import cv2

    from ..render.preview import render_mesh
    from .camera import project

    cfg = config or PhotometricConfig()
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    N, H, W = images.shape[:3]
    r = cfg.resolution
    img = torch.as_tensor(np.stack([cv2.resize(x, (r, r), interpolation=cv2.INTER_AREA) for x in images]), dtype=torch.float32) / 255
    msk = np.stack([cv2.resize(np.asarray(m, np.float32), (r, r), interpolation=cv2.INTER_AREA) for m in masks])
    msk = torch.as_tensor(msk / (255.0 if msk.max() > 1.5 else 1.0), dtype=torch.float32)[..., None]
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    Kr = f32(K).clone()
    Kr[:, :2] *= r / W
    Kr[:, 0, 2] += 0.5  # renderer: pixel centres at +0.5
    Kr[:, 1, 2] += 0.5
    w2c = f32(world_to_cam)
    face_idx = _face_index(model)
    tri_face = model.faces[face_idx]
    lm_det = f32(landmarks)[..., :2]
    vmask = f32(valid)
    iod = float(np.median(np.linalg.norm(landmarks[valid][:, [33, 133], :2].mean(1) - landmarks[valid][:, [263, 362], :2].mean(1), axis=-1)))
    beta = f32(shape)[None]
    e0, p0, t0_ = f32(expression), f32(pose), f32(transl)
    d_expr = torch.zeros_like(e0, requires_grad=True)
    d_rot = torch.zeros(N, 3, requires_grad=True)
    d_tr = torch.zeros(N, 3, requires_grad=True)
    albedo = torch.full((cfg.texture_size, cfg.texture_size, 3), 0.6, requires_grad=True)
    sh = torch.zeros(9, 3)
    sh[0] = 1.0 / SH_C[0]
    sh.requires_grad_(True)
    lo, hi = model.expression_range

    def geometry(idx: Tensor):
        e = (e0[idx] + d_expr[idx]).clamp(lo, hi) if np.isfinite(lo) and np.isfinite(hi) else e0[idx] + d_expr[idx]
        p = p0[idx].clone()
        p[:, 0] = p[:, 0] + d_rot[idx]
        return model(beta.expand(len(idx), -1), e, p, t0_[idx] + d_tr[idx])

    def losses(idx: Tensor) -> tuple[Tensor, Tensor]:
        out = geometry(idx)
        col, alpha = render_mesh(out.vertices, tri_face, Kr[idx], w2c, r, r, uvs=model.uvs, uv_faces=model.uv_faces[face_idx],
                                 texture_image=albedo.clamp(0, 1), sh=sh, background=0.0, return_alpha=True)
        wpix = alpha.detach() * msk[idx]
        photo = (wpix * (col - img[idx]).abs()).sum() / (3 * wpix.sum()).clamp_min(1.0)
        sil = photo.new_zeros(())
        if cfg.w_silhouette > 0:
            _, full_alpha = render_mesh(out.vertices, model.faces, Kr[idx], w2c, r, r, background=0.0, return_alpha=True)
            sil = (full_alpha * (1 - msk[idx])).mean()
        uv, _ = project(out.landmarks, f32(K)[idx], w2c)
        lmk = (torch.sqrt(((uv - lm_det[idx]) ** 2).sum(-1) / iod**2 + 1e-4).mean(-1) * vmask[idx]).mean()
        stay = (d_expr[idx] ** 2).sum(-1).mean() + (d_rot[idx] ** 2).sum(-1).mean() * 10 + (d_tr[idx] ** 2).sum(-1).mean() * 1e4
        return photo, cfg.w_silhouette * sil + cfg.w_landmarks * lmk + cfg.w_stay * stay

    def run(params: list, iters: int, joint: bool) -> None:
        opt = torch.optim.Adam(params)
        for _ in range(iters):
            idx = torch.randperm(N, generator=g)[: min(cfg.batch, N)]
            opt.zero_grad(set_to_none=True)
            photo, reg = losses(idx)
            (photo + (reg if joint else 0.0)).backward()
            opt.step()

    def masked_error() -> float:
        with torch.no_grad():
            errs = [float(losses(torch.arange(s, min(N, s + cfg.batch)))[0]) * len(range(s, min(N, s + cfg.batch))) for s in range(0, N, cfg.batch)]
        return sum(errs) / N

    app = [{"params": [albedo, sh], "lr": cfg.lr}]
    run(app, cfg.iters_appearance, False)
    err_a = masked_error()
    t1 = time.perf_counter()
    # Geometry steps sized to sub-pixel motion at the working resolution (Adam steps ~ lr).
    geo = [{"params": [d_expr], "lr": cfg.lr * 0.25}, {"params": [d_rot], "lr": cfg.lr * 0.02}, {"params": [d_tr], "lr": cfg.lr * 0.005}]
    run(app + (geo if cfg.refine_geometry else []), cfg.iters_joint, cfg.refine_geometry)
    err_b = masked_error()
    with torch.no_grad():
        e = (e0 + d_expr).clamp(lo, hi) if np.isfinite(lo) and np.isfinite(hi) else e0 + d_expr
        p = p0.clone()
        p[:, 0] += d_rot
    return PhotometricResult(expression=e.numpy(), pose=p.numpy(), transl=(t0_ + d_tr).detach().numpy(),
                             albedo=albedo.detach().clamp(0, 1).numpy(), sh=sh.detach().numpy(), error_landmark_only=err_a,
                             error_refined=err_b, timings={"appearance": t1 - t0, "joint": time.perf_counter() - t1})

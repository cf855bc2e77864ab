"""Photometric refinement of a landmark fit (``avatar3d track --photometric``, issue #4 step 4).

The landmark fit is rendered with our differentiable mesh rasterizer
(:mod:`avatar3d.tracking.photometric_render`) at a reduced resolution (default 128 px for 512 px
crops) and compared with the crops. Unknowns:

* per sequence: an albedo texture in the model's UV space and 2nd-order SH lighting (9 x RGB,
  OpenCV camera frame, as ``render_mesh(sh=...)``);
* per frame: a change of expression, of every joint rotation (head, jaw, eyes) and of translation.

Loss on a mini-batch of consecutive frames:

* photometric: robust (Charbonnier) colour distance on pixels that are both model face region and
  person in the segmentation mask (hair, glasses frames and background mostly excluded);
* silhouette, one-sided and only in a box around the projected face: rendered coverage where the
  mask says background (hair and shoulders, which the model lacks, must not pull the head);
* landmarks: robust distance to the *detected* landmarks in inter-ocular units (the NME the landmark
  fit minimised), so the refinement cannot drift off them;
* priors: squared change from the landmark fit, second differences of the change along time (no
  added jitter), albedo total variation.

Schedule (why): stage 1 fits albedo + lighting with the geometry frozen at the landmark fit,
starting from a back-projection of the crops, so the appearance is explained before geometry may
move; stage 2 refines geometry and appearance jointly, with a lower texture learning rate so
misalignment is corrected by moving the mesh rather than baked into the albedo. Per-frame
parameters use a row-wise Adam (moments persist across visits of a frame, second moment shared by
all frames, cosine decay) so frames that are already aligned barely move. Afterwards the per-frame
changes are smoothed along time, frames whose change does not lower their own image error are put
back, and a short appearance-only pass fits the albedo to the final geometry.

Fair comparison (``config.baseline``): the baseline runs the same appearance optimisation (same
batches, iterations, learning rates, final pass) with the geometry frozen at the landmark fit, with
its own albedo and lighting; both fits are then judged on one shared pixel set (see
:func:`~avatar3d.tracking.photometric_render.masked_errors`). If the refined fit does not win, the
landmark fit is returned (``PhotometricResult.fallback``).

Speed (issue #4: at most 0.5 s per frame all-in, baseline included, on two CPU cores): only the
sub-mesh the renderer draws is posed (:class:`~avatar3d.tracking.photometric_render.SubmeshPoser`:
identity blended once, expressions as one matmul, each rigid skinning group as one batched
matmul); geometry that no longer changes (the landmark fit throughout; the refined fit after the
smoothing) is rasterized once per frame (:class:`~avatar3d.tracking.photometric_render.RasterCache`),
with its SH basis and its antialiasing as a sparse linear map, so the appearance-only passes of
stage 1, the baseline, the polish and the error checks cost a texture lookup and a few small ops per
step. All of these are exact: results match the straightforward implementation to float rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._tensor import f32, torch_threads
from ..errors import BadInputError
from ..models.base import HeadModel
from ..render.camera import project
from .photometric_render import HeadRenderer, RasterCache, SubmeshPoser, backproject_albedo, face_box, masked_errors, white_sh

__all__ = ["PhotometricConfig", "PhotometricResult", "refine_photometric"]

# MediaPipe face-mesh eye corners, for the per-frame inter-ocular distance.
_EYE_L, _EYE_R = [33, 133], [263, 362]


@dataclass
class PhotometricConfig:
    """Knobs of :func:`refine_photometric` (defaults: 512 px crops refined at 128 px)."""

    resolution: int = 128  #: render / compare size in pixels (crops are area-downsampled to it)
    texture_size: int = 128  #: albedo texture is (texture_size, texture_size, 3); ~ the face's size at the render resolution
    batch: int = 16  #: consecutive frames per mini-batch
    appearance_epochs: int = 1  #: stage 1 passes (albedo + SH, geometry frozen; starts from a back-projection)
    epochs: int = 3  #: stage 2 passes (+ per-frame geometry)
    iters_per_batch: int = 4  #: optimiser steps per mini-batch visit
    refine_geometry: bool = True  #: False: stage 2 refines appearance only (what the baseline does)
    baseline: bool = True  #: also run the fair baseline (stage 2 with frozen geometry; cheap, no geometry gradients)
    region: str = "face"  #: model region compared photometrically
    lr_texture: float = 0.03
    lr_texture_joint: float = 0.005  #: stage 2: low, so geometry (not albedo) absorbs misalignment
    lr_sh: float = 0.02
    lr_expression: float = 0.05  #: per step; 0.01 capped the change at ~0.06 in 12 steps, so a brow the landmarks missed stayed missed
    lr_rotation: float = 0.002  #: radians
    lr_transl: float = 0.0004  #: metres
    w_silhouette: float = 0.5
    w_landmarks: float = 1.0  #: on the robust landmark distance in inter-ocular units (~ NME)
    landmark_delta: float = 0.01  #: Charbonnier transition, inter-ocular units
    w_expression_reg: float = 0.01  #: squared expression change
    w_rotation_reg: float = 0.5  #: squared joint-rotation change (rad²)
    w_transl_reg: float = 50.0  #: squared translation change (m²)
    w_temporal: float = 0.5  #: squared second difference of the changes (expression units; rotation x10, transl x100)
    w_texture_tv: float = 0.05
    silhouette_margin: float = 0.05  #: face box growth, fraction of its size
    fallback: bool = True  #: return the landmark fit when the refinement does not beat the baseline (needs ``baseline``)
    polish_epochs: int = 1  #: appearance-only passes after smoothing / reverting (the baseline gets them too)
    smooth_passes: int = 2  #: [1,2,1]/4 filter passes over the per-frame changes along time (0: off)
    keep_only_improved: bool = True  #: revert frames whose refined geometry does not lower their image error
    #: memory (MB) for the rasterizations of fixed geometry (landmark fit, final fit) kept across passes; longer clips re-rasterize
    cache_mb: float = 768.0
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        for k in ("resolution", "texture_size", "batch"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"PhotometricConfig.{k} must be a positive integer, got {getattr(self, k)}")
        for k in ("appearance_epochs", "epochs", "iters_per_batch"):
            if int(getattr(self, k)) < 0:
                raise ValueError(f"PhotometricConfig.{k} must be >= 0, got {getattr(self, k)}")


@dataclass
class PhotometricResult:
    """Output of :func:`refine_photometric`; N frames."""

    expression: np.ndarray  #: (N, E) refined
    pose: np.ndarray  #: (N, J, 3) refined axis-angle
    transl: np.ndarray  #: (N, 3) metres
    albedo: np.ndarray  #: (T, T, 3) float32 in [0, 1], row 0 = top (UV v = 1)
    sh: np.ndarray  #: (9, 3) SH lighting, camera frame
    errors_refined: np.ndarray  #: (N,) masked mean |render - image|, grey levels 0..255
    errors_landmark_only: np.ndarray  #: (N,) the same for the landmark-only geometry (baseline appearance when run)
    fallback: bool = False  #: True: the refinement lost to the baseline, so the landmark fit and baseline appearance are returned
    reverted: Optional[np.ndarray] = None  #: (N,) bool, frames put back to the landmark fit (``keep_only_improved``)
    baseline_albedo: Optional[np.ndarray] = None  #: the baseline's own albedo, when ``config.baseline``
    baseline_sh: Optional[np.ndarray] = None
    timings: dict = field(default_factory=dict)  #: wall seconds per stage, ``total``, and ``cpu_total`` (process CPU seconds)
    losses: list = field(default_factory=list)  #: stage 2 loss per step

    @property
    def error_refined(self) -> float:
        """Mean over frames of :attr:`errors_refined`."""
        return float(np.mean(self.errors_refined))

    @property
    def error_landmark_only(self) -> float:
        """Mean over frames of :attr:`errors_landmark_only`."""
        return float(np.mean(self.errors_landmark_only))


class _RowAdam:
    """Adam-like optimiser on the rows (frames) of an (N, ...) tensor, stepping only a mini-batch's rows.

    Two changes from torch's Adam, both against jitter: the second moment is shared by all frames
    (per coordinate), so a frame whose gradient is small - already aligned - takes a small step
    instead of Adam's unit-size first step; and the learning rate decays (cosine) with each row's
    own step count, so the last steps do not leave the parameters oscillating by ``lr``. Momentum
    persists per row across visits (torch's Adam would also move rows outside the batch).
    """

    def __init__(self, p: Tensor, lr: float, total_steps: int, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-12):
        self.p, self.lr, self.total, self.b1, self.b2, self.eps = p, lr, max(1, total_steps), betas[0], betas[1], eps
        self.m = torch.zeros_like(p)
        self.v = torch.zeros(p.shape[1:])
        self.t = torch.zeros(p.shape[0])
        self.tv = 0

    def step(self, idx: Tensor, g: Tensor) -> None:
        self.t[idx] += 1
        self.tv += 1
        m = self.m[idx] * self.b1 + (1 - self.b1) * g
        self.m[idx] = m
        self.v = self.v * self.b2 + (1 - self.b2) * (g * g).mean(0)
        shape = (-1,) + (1,) * (g.ndim - 1)
        t = self.t[idx].view(shape)
        mh = m / (1 - self.b1**t)
        vh = self.v / (1 - self.b2**self.tv)
        decay = 0.5 * (1 + torch.cos(torch.pi * ((t - 1) / self.total).clamp(0, 1)))
        self.p[idx] -= self.lr * decay * mh / (vh.sqrt() + self.eps)


def _tv(tex: Tensor) -> Tensor:
    return (tex[1:] - tex[:-1]).pow(2).mean() + (tex[:, 1:] - tex[:, :-1]).pow(2).mean()


def _d2(x: Tensor) -> Tensor:
    """Mean squared second difference along frames of (B, ...) x (0 for B < 3)."""
    if x.shape[0] < 3:
        return x.new_zeros(())
    return (x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).flatten(1).sum(-1).mean()


def _smooth121(x: Tensor) -> Tensor:
    """(N, ...) x filtered with [1, 2, 1] / 4 along frames (ends use [2, 1] / 3)."""
    if x.shape[0] < 3:
        return x.clone()
    y = x.clone()
    y[1:-1] = (x[:-2] + 2 * x[1:-1] + x[2:]) / 4
    y[0] = (2 * x[0] + x[1]) / 3
    y[-1] = (2 * x[-1] + x[-2]) / 3
    return y


def _chunks(N: int, B: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Consecutive mini-batches covering 0..N-1 in random order; boundaries shift every pass."""
    if N <= B:
        return [np.arange(N)]
    off = int(rng.integers(0, B))
    edges = [0] + list(range(off if off > 0 else B, N, B)) + [N]
    parts = [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return [parts[i] for i in rng.permutation(len(parts))]


def _check_inputs(model: HeadModel, images, masks, landmarks, valid, expression, pose, transl, K, world_to_cam) -> int:
    N = len(expression)
    if model.uvs is None or model.uv_faces is None:
        raise BadInputError(f"head model {model.name!r} has no UV layout, so it cannot carry an albedo texture")
    if images.ndim != 4 or images.shape[0] != N or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise BadInputError(f"images must be (N, S, S, 3) square crops with N = {N}, got {images.shape}")
    if masks.shape[:3] != images.shape[:3]:
        raise BadInputError(f"masks must be (N, S, S) matching images {images.shape[:3]}, got {masks.shape}")
    if landmarks.shape[:2] != (N, 478) or valid.shape != (N,):
        raise BadInputError(f"landmarks must be (N, 478, 2) and valid (N,) with N = {N}, got {landmarks.shape} and {valid.shape}")
    if expression.shape[1] != model.num_expression or pose.shape[1:] != (model.num_joints, 3) or transl.shape != (N, 3):
        raise BadInputError(f"expression/pose/transl must be (N, {model.num_expression}), (N, {model.num_joints}, 3), (N, 3); "
                            f"got {expression.shape}, {pose.shape}, {transl.shape}")
    if K.shape != (N, 3, 3) or world_to_cam.shape != (4, 4):
        raise BadInputError(f"K must be (N, 3, 3) and world_to_cam (4, 4), got {K.shape} and {world_to_cam.shape}")
    return N


def refine_photometric(model: HeadModel, images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, valid: np.ndarray,
                       shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, transl: np.ndarray, K: np.ndarray,
                       world_to_cam: np.ndarray, config: Optional[PhotometricConfig] = None,
                       progress: bool = False) -> PhotometricResult:
    """Refine a landmark fit photometrically (see the module docstring).

    Args:
        images: (N, S, S, 3) uint8 RGB crops (any S; resized to ``config.resolution``).
        masks: (N, S, S) uint8 person masks (255 = person) or floats in [0, 1].
        landmarks: (N, 478, >=2) detected landmarks in crop pixels (OpenCV, centres at integers).
        valid: (N,) bool, False where detection failed (no landmark term there).
        shape (S,), expression (N, E), pose (N, J, 3), transl (N, 3): the landmark fit.
        K: (N, 3, 3) crop intrinsics in crop pixels; world_to_cam: (4, 4) OpenCV extrinsics.
    Returns:
        :class:`PhotometricResult`.
    """
    # Many small ops per step: extra intra-op threads only add synchronisation, and on a shared
    # 2-core machine their spin-waiting made steps up to 15x slower. Restored on exit.
    with torch_threads(1):
        return _refine(model, images, masks, landmarks, valid, shape, expression, pose, transl, K, world_to_cam,
                       config or PhotometricConfig(), progress)


def _refine(model, images, masks, landmarks, valid, shape, expression, pose, transl, K, world_to_cam, cfg: PhotometricConfig,
            progress: bool) -> PhotometricResult:
    import cv2

    cfg.validate()
    images, masks = np.asarray(images), np.asarray(masks)
    landmarks, valid = np.asarray(landmarks, np.float32)[..., :2], np.asarray(valid, bool)
    expression, pose, transl = (np.asarray(a, np.float32) for a in (expression, pose, transl))
    K, world_to_cam = np.asarray(K, np.float32), np.asarray(world_to_cam, np.float32)
    N = _check_inputs(model, images, masks, landmarks, valid, expression, pose, transl, K, world_to_cam)
    if cfg.region not in model.region_names:
        raise BadInputError(f"head model {model.name!r} has no region {cfg.region!r} (it has {', '.join(model.region_names)})")
    t_start, cpu_start = time.perf_counter(), time.process_time()
    timings: dict = {}
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    S, r, B = images.shape[1], int(cfg.resolution), int(cfg.batch)

    def small(a: np.ndarray) -> np.ndarray:
        return a if a.shape[0] == r else cv2.resize(a, (r, r), interpolation=cv2.INTER_AREA)

    img = torch.as_tensor(np.stack([small(x) for x in images]), dtype=torch.float32) / 255.0
    m = np.stack([small(np.asarray(x, np.float32)) for x in masks])
    msk = torch.as_tensor(m / (255.0 if m.max() > 1.5 else 1.0), dtype=torch.float32)[..., None]
    Kt, w2c = f32(K), f32(world_to_cam)
    rend = HeadRenderer(model, Kt, w2c, S, r, cfg.region)
    pose_sub = SubmeshPoser(model, rend.vertex_ids, f32(shape))  # poses only what is drawn, identity blended once
    e0, p0, t0 = f32(expression), f32(pose), f32(transl)
    lm_det, vmask = f32(landmarks), f32(valid)
    iod = (lm_det[:, _EYE_L].mean(1) - lm_det[:, _EYE_R].mean(1)).norm(dim=-1)
    iod = torch.where(vmask > 0, iod, iod[vmask > 0].median() if valid.any() else torch.tensor(float(S) / 4)).clamp_min(1.0)
    lo, hi = model.expression_range
    bounded = bool(np.isfinite(lo) and np.isfinite(hi))

    from .fitting import landmark_head

    lhead = landmark_head(model)
    lhead = lhead if lhead.uses_response else None  # without a response table, the sub-mesh's own landmarks are the same points
    beta = f32(shape).reshape(-1)
    # Per-frame changes from the landmark fit (what stage 2 optimises).
    d_e, d_p, d_t = torch.zeros_like(e0), torch.zeros_like(p0), torch.zeros_like(t0)

    def verts(idx, de=None, dp=None, dt=None):
        """(B,Vs,3) posed sub-mesh vertices and (B,478,3) landmarks of frames idx with changes (default: current ones)."""
        de = d_e[idx] if de is None else de
        dp = d_p[idx] if dp is None else dp
        dt = d_t[idx] if dt is None else dt
        e = e0[idx] + de
        if bounded:
            e = e.clamp(lo, hi)
        v, lmk = pose_sub(e, p0[idx] + dp, t0[idx] + dt)
        if lhead is not None:  # landmarks as the landmark fit sees them (MediaPipe's measured view of the model)
            lmk = lhead(beta, e, p0[idx] + dp, t0[idx] + dt)[0]
        return v, lmk

    def verts_init(idx):
        return pose_sub(e0[idx], p0[idx], t0[idx])[0]

    # The landmark-fit geometry never changes: back-projection, stage 1, the baseline, its polish and
    # the error checks all draw it, so each frame is rasterized once.
    init_ras = RasterCache(rend, verts_init, N, cfg.cache_mb * 0.5e6)

    # ------------------------------------------------------------------ stage 1: appearance only
    t1 = time.perf_counter()
    with torch.no_grad():
        tex0 = backproject_albedo(init_ras, img, msk, int(cfg.texture_size), B)
    tex = tex0.clone().requires_grad_(True)
    sh = white_sh().requires_grad_(True)
    opt = torch.optim.Adam([dict(params=[tex], lr=cfg.lr_texture), dict(params=[sh], lr=cfg.lr_sh)])

    def photo_loss(image: Tensor, ras: dict, idx) -> Tensor:
        w = ras["region"] * (msk[idx] > 0.5).float()
        diff = torch.sqrt((image - img[idx]).pow(2).sum(-1, keepdim=True) + 1e-6)
        return ((diff * w).sum((1, 2, 3)) / w.sum((1, 2, 3)).clamp_min(1.0)).mean()

    def appearance_steps(ras: dict, idx, tex_: Tensor, sh_: Tensor, opt_: torch.optim.Optimizer) -> None:
        for _ in range(cfg.iters_per_batch):
            opt_.zero_grad(set_to_none=True)
            loss = photo_loss(rend.shade(ras, tex_, sh_)[0], ras, idx) + cfg.w_texture_tv * _tv(tex_)
            loss.backward()
            opt_.step()
            with torch.no_grad():
                tex_.clamp_(0, 1)

    for _ in range(cfg.appearance_epochs):
        for idx in _chunks(N, B, rng):
            appearance_steps(init_ras(idx), idx, tex, sh, opt)
    timings["appearance"] = time.perf_counter() - t1
    stage1 = (tex.detach().clone(), sh.detach().clone())

    # ------------------------------------------------------------------ stage 2: joint
    t2 = time.perf_counter()
    schedule = [c for _ in range(cfg.epochs) for c in _chunks(N, B, rng)]  # shared with the baseline
    opt = torch.optim.Adam([dict(params=[tex], lr=cfg.lr_texture_joint), dict(params=[sh], lr=cfg.lr_sh)])
    steps = cfg.epochs * cfg.iters_per_batch  # per frame
    row_opts = [_RowAdam(d_e, cfg.lr_expression, steps), _RowAdam(d_p, cfg.lr_rotation, steps), _RowAdam(d_t, cfg.lr_transl, steps)]
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(schedule), desc="photometric", unit="batch", leave=False)
    for idx in schedule:
        it = torch.as_tensor(idx)
        normals = rend.normals(verts(idx)[0]) if cfg.refine_geometry else None
        for _ in range(cfg.iters_per_batch if cfg.refine_geometry else 0):
            de, dp, dt = (x[idx].clone().requires_grad_(True) for x in (d_e, d_p, d_t))
            v, lmk3 = verts(idx, de, dp, dt)
            ras = rend.raster(v, idx, normals)
            image, alpha = rend.shade(ras, tex, sh)
            loss = photo_loss(image, ras, idx)
            if cfg.w_silhouette > 0:
                box = face_box(ras["pos"], rend.region_idx, r, cfg.silhouette_margin)
                outside = alpha * (1 - msk[idx]) * box
                loss = loss + cfg.w_silhouette * (outside.sum((1, 2, 3)) / box.sum((1, 2, 3)).clamp_min(1.0)).mean()
            if cfg.w_landmarks > 0:
                uv = project(lmk3, Kt[idx], w2c)[0]
                d = (uv - lm_det[idx]).norm(dim=-1) / iod[idx, None]
                rob = torch.sqrt(d * d + cfg.landmark_delta**2) - cfg.landmark_delta
                loss = loss + cfg.w_landmarks * (rob.mean(-1) * vmask[idx]).sum() / vmask[idx].sum().clamp_min(1.0)
            loss = loss + cfg.w_expression_reg * de.pow(2).sum(-1).mean() + cfg.w_rotation_reg * dp.pow(2).sum((-1, -2)).mean() \
                + cfg.w_transl_reg * dt.pow(2).sum(-1).mean()
            loss = loss + cfg.w_temporal * (_d2(de) + 100 * _d2(dp) + 1e4 * _d2(dt))
            loss = loss + cfg.w_texture_tv * _tv(tex)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for ro, g in zip(row_opts, (de.grad, dp.grad, dt.grad)):
                    ro.step(it, g)
                if bounded:  # keep the stored change inside the model's expression range
                    d_e[idx] = (e0[idx] + d_e[idx]).clamp(lo, hi) - e0[idx]
                tex.clamp_(0, 1)
            losses.append(float(loss.detach()))
        if not cfg.refine_geometry:
            appearance_steps(init_ras(idx), idx, tex, sh, opt)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    timings["joint"] = time.perf_counter() - t2

    # ------------------------------------------------------------------ baseline: same schedule, geometry frozen
    base_app = stage1
    if cfg.baseline and cfg.refine_geometry:
        t3, c3 = time.perf_counter(), time.process_time()
        btex, bsh = stage1[0].clone().requires_grad_(True), stage1[1].clone().requires_grad_(True)
        bopt = torch.optim.Adam([dict(params=[btex], lr=cfg.lr_texture_joint), dict(params=[bsh], lr=cfg.lr_sh)])
        for idx in schedule:
            appearance_steps(init_ras(idx), idx, btex, bsh, bopt)
        base_app = (btex.detach(), bsh.detach())
        timings["baseline"] = time.perf_counter() - t3
        timings["cpu_baseline"] = time.process_time() - c3

    t4 = time.perf_counter()
    app = (tex.detach(), sh.detach())
    with torch.no_grad():
        reverted = np.zeros(N, bool)
        for _ in range(cfg.smooth_passes if cfg.refine_geometry else 0):
            # Mini-batches see a few frames at a time; a light [1, 2, 1] / 4 filter along time removes
            # the frame-to-frame noise of the changes (jitter) and keeps their slow part.
            for d in (d_e, d_p, d_t):
                d.copy_(_smooth121(d))
        # The refined geometry is fixed from here on (but for frames put back below): rasterized once
        # for the revert check, the polish and the final errors.
        cur_ras = RasterCache(rend, lambda idx: verts(idx)[0], N, cfg.cache_mb * 0.5e6) if cfg.refine_geometry else init_ras
        if cfg.refine_geometry and cfg.keep_only_improved:
            # A frame keeps its refinement only if, under the refined appearance, it explains the
            # image better than the landmark fit (static or tiny clips give the geometry nothing to
            # gain, and its optimiser noise would only add error). The baseline plays no part here.
            e_lmk, e_cur = masked_errors(rend, init_ras, app, cur_ras, app, img, msk, B)
            reverted = e_cur > e_lmk
            rv = torch.as_tensor(reverted)
            d_e[rv], d_p[rv], d_t[rv] = 0.0, 0.0, 0.0
            cur_ras.forget(reverted)
    if cfg.refine_geometry and cfg.polish_epochs > 0:
        # Smoothing and reverting moved the geometry after the albedo last saw it: a short
        # appearance-only pass fits it to the final geometry. The baseline gets the same pass,
        # each continuing its own stage-2 optimiser.
        t5 = time.perf_counter()
        polish = [c for _ in range(cfg.polish_epochs) for c in _chunks(N, B, rng)]
        branches = [(cur_ras, tex, sh, opt)]
        if cfg.baseline:
            branches.append((init_ras, btex, bsh, bopt))
        for k, (rf, tx, shx, op) in enumerate(branches):
            c5 = time.process_time()
            for idx in polish:
                appearance_steps(rf(idx), idx, tx, shx, op)
            if k == 1:
                timings["cpu_baseline"] += time.process_time() - c5
        app = (tex.detach(), sh.detach())
        if cfg.baseline:
            base_app = (btex.detach(), bsh.detach())
        timings["polish"] = time.perf_counter() - t5
    with torch.no_grad():
        err_base, err_ref = masked_errors(rend, init_ras, base_app, cur_ras, app, img, msk, B)
        # Sequence-level safety net: when the refined fit does not explain the images better than
        # the landmark fit with the same appearance budget (near-static or very short clips: the
        # geometry has nothing to gain), the landmark fit and the baseline appearance are returned.
        # Reported as ``fallback``; the errors of both candidates are kept as measured.
        fallback = bool(cfg.fallback and cfg.baseline and cfg.refine_geometry and err_ref.mean() >= err_base.mean())
        if fallback:
            for d in (d_e, d_p, d_t):
                d.zero_()
            app = base_app
        e_out = e0 + d_e
        if bounded:
            e_out = e_out.clamp(lo, hi)
    timings["errors"] = time.perf_counter() - t4 - timings.get("polish", 0.0)
    timings["total"] = time.perf_counter() - t_start
    # Process CPU time (one torch thread): what the wall time would be on an idle core; shared
    # machines inflate the wall time.
    timings["cpu_total"] = time.process_time() - cpu_start
    has_base = cfg.baseline and cfg.refine_geometry
    return PhotometricResult(expression=e_out.numpy(), pose=(p0 + d_p).numpy(), transl=(t0 + d_t).numpy(),
                             albedo=app[0].numpy().astype(np.float32), sh=app[1].numpy().astype(np.float32),
                             errors_refined=err_ref, errors_landmark_only=err_base, reverted=reverted, fallback=fallback,
                             baseline_albedo=base_app[0].numpy() if has_base else None,
                             baseline_sh=base_app[1].numpy() if has_base else None, timings=timings, losses=losses)

"""Photometric refinement of a landmark fit (stage 4 of ``avatar3d track``).

Starting from the landmark-only :class:`~avatar3d.tracking.sequence.TrackedSequence`, this stage
renders the head model with our differentiable mesh ops (:mod:`avatar3d.render.mesh`) and jointly
optimises, with Adam:

* per sequence: an albedo texture in the model's UV space and 2nd-order SH lighting (9 x RGB,
  in the OpenCV camera frame, the same convention as ``render_mesh(sh=...)``);
* per frame: expression, joint poses (head rotation, jaw, eyes, ...) and translation.

Loss per mini-batch of consecutive frames (rendered at ``config.resolution``):

* photometric robust L1 between render and crop on the face region inside the foreground mask;
* silhouette: antialiased coverage vs the mask, only inside a box around the projected face
  region, so hair and shoulders (which the model does not cover) do not pull the head;
* landmarks: the model's 478 landmarks stay near the landmark-fit (or given detections);
* regularisers: expression / pose change from the landmark fit, temporal smoothness within
  the batch, and texture smoothness (albedo total variation).

The albedo starts from a back-projection of the crops (so few iterations are needed) and the
lighting from uniform white light. Per-frame image errors are reported before (landmark fit)
and after refinement, both rendered with the final albedo/lighting so that only the geometry
differs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError
from ..models.base import HeadModel
from ..render.camera import world_to_clip
from ..render.mesh import antialias, interpolate, rasterize, texture, triangle_adjacency
from ..render.shading import SH_C, sh_irradiance, vertex_normals
from .camera import project
from .sequence import TrackedSequence

__all__ = ["PhotometricConfig", "PhotometricResult", "refine_photometric", "render_sequence_frames"]

ImageSource = Union[np.ndarray, Callable[[np.ndarray], np.ndarray]]


@dataclass
class PhotometricConfig:
    """Knobs of :func:`refine_photometric` (defaults: 512 crops refined at 256)."""

    resolution: int = 256  #: render / compare resolution in pixels (square crops are resized)
    texture_size: int = 256  #: albedo texture is (texture_size, texture_size, 3)
    batch_frames: int = 8  #: frames per mini-batch (consecutive frames)
    epochs: int = 3  #: passes over the sequence
    iters_per_batch: int = 4  #: Adam steps on a mini-batch per visit
    appearance_iters: int = 2  #: texture/lighting-only steps per batch in the first epoch
    region: str = "face"  #: model region compared photometrically
    lr_expression: float = 0.02
    lr_pose: float = 0.004  #: radians
    lr_transl: float = 0.0008  #: metres
    lr_texture: float = 0.02
    lr_lighting: float = 0.02
    w_photo: float = 1.0
    w_silhouette: float = 0.5
    w_landmark: float = 2.0e3  #: on squared distance in units of the crop width
    w_expression_reg: float = 0.02  #: squared change from the landmark fit (coefficient units)
    w_pose_reg: float = 0.5  #: squared change in radians
    w_transl_reg: float = 50.0  #: squared change in metres
    w_temporal: float = 0.2  #: squared frame-to-frame change of expression (+ pose, scaled)
    w_texture_tv: float = 0.05
    silhouette_margin: float = 0.06  #: box around the projected face region, fraction of its size
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        for k in ("resolution", "texture_size", "batch_frames"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"PhotometricConfig.{k} must be a positive integer, got {getattr(self, k)}")
        for k in ("epochs", "iters_per_batch", "appearance_iters"):
            if int(getattr(self, k)) < 0:
                raise ValueError(f"PhotometricConfig.{k} must be >= 0, got {getattr(self, k)}")


@dataclass
class PhotometricResult:
    """What :func:`refine_photometric` returns. N frames."""

    sequence: TrackedSequence  #: refined copy (expression/pose/transl per frame, same shape, ``lighting`` (9,3))
    albedo: np.ndarray  #: (Ht, Wt, 3) float32 in [0,1]; row 0 is the top (UV v = 1), uvs origin bottom-left
    lighting: np.ndarray  #: (9, 3) SH coefficients in the OpenCV camera frame
    errors_before: np.ndarray  #: (N,) mean abs error (0..255 grey levels) of the landmark fit, masked
    errors_after: np.ndarray  #: (N,) the same after refinement
    losses: list[float] = field(default_factory=list)  #: total loss per optimisation step
    seconds: float = 0.0  #: wall time of the refinement


# ------------------------------------------------------------------------------------------ inputs
def _fetch(src: ImageSource, idx: np.ndarray, what: str, channels: Optional[int]) -> np.ndarray:
    """Frames ``idx`` of an array or a loader callable, checked: (B,H,W,3) or (B,H,W)."""
    a = np.asarray(src(idx) if callable(src) else src[idx])
    want = (len(idx),) + ((-1, -1, channels) if channels else (-1, -1))
    if a.ndim != len(want) or a.shape[0] != len(idx) or (channels and a.shape[-1] != channels):
        shp = "(N, H, W, 3)" if channels else "(N, H, W)"
        raise BadInputError(f"{what} must be {shp} uint8 frames, got shape {a.shape} for {len(idx)} frames")
    return a


def _resize(frames: np.ndarray, r: int, interp: int) -> np.ndarray:
    import cv2

    if frames.shape[1:3] == (r, r):
        return frames
    return np.stack([cv2.resize(f, (r, r), interpolation=interp) for f in frames])


def _load_inputs(images: ImageSource, masks: ImageSource, seq: TrackedSequence, r: int, chunk: int = 32) -> tuple[Tensor, Tensor]:
    """(N,r,r,3) float images in [0,1] and (N,r,r,1) float masks, resized with area averaging."""
    import cv2

    N = seq.num_frames
    if not callable(images) and len(images) != N:
        raise BadInputError(f"images has {len(images)} frames but the sequence has {N}")
    if not callable(masks) and len(masks) != N:
        raise BadInputError(f"masks has {len(masks)} frames but the sequence has {N}")
    imgs, msks = [], []
    for s in range(0, N, chunk):
        idx = np.arange(s, min(N, s + chunk))
        im = _fetch(images, idx, "images", 3)
        mk = _fetch(masks, idx, "masks", None)
        if im.shape[1:3] != (seq.height, seq.width) or mk.shape[1:3] != (seq.height, seq.width):
            raise BadInputError(f"images {im.shape[1:3]} and masks {mk.shape[1:3]} must match the sequence crop size "
                                f"({seq.height}, {seq.width})")
        if im.dtype != np.uint8 or mk.dtype != np.uint8:
            raise BadInputError(f"images and masks must be uint8, got {im.dtype} and {mk.dtype}")
        imgs.append(_resize(im, r, cv2.INTER_AREA))
        msks.append(_resize(mk, r, cv2.INTER_AREA))
    img = torch.from_numpy(np.concatenate(imgs)).float() / 255.0
    msk = torch.from_numpy(np.concatenate(msks)).float()[..., None] / 255.0
    return img, msk


def _check_model(model: HeadModel, seq: TrackedSequence) -> None:
    if seq.expression.ndim != 2 or seq.expression.shape[1] != model.num_expression:
        raise BadInputError(f"sequence expression is {seq.expression.shape}, but model {model.name!r} has {model.num_expression} expressions")
    if seq.pose.ndim != 3 or seq.pose.shape[1:] != (model.num_joints, 3):
        raise BadInputError(f"sequence pose is {seq.pose.shape}, but model {model.name!r} needs (N, {model.num_joints}, 3)")
    N = seq.num_frames
    for k, shp in (("transl", (N, 3)), ("K", (N, 3, 3)), ("world_to_cam", (N, 4, 4))):
        if np.asarray(getattr(seq, k)).shape != shp:
            raise BadInputError(f"sequence {k} must be {shp}, got {np.asarray(getattr(seq, k)).shape}")
    if seq.width != seq.height:
        raise BadInputError(f"photometric refinement expects square crops, got {seq.width}x{seq.height}")


# ------------------------------------------------------------------------------------------ renderer
class _Renderer:
    """Renders the textured, SH-lit head for a batch of frames at ``r`` x ``r``."""

    def __init__(self, model: HeadModel, seq: TrackedSequence, r: int, region: str):
        self.model, self.r = model, r
        self.tri = model.faces.to(torch.int32).contiguous()
        self.uv_tri = model.uv_faces.to(torch.int32).contiguous()
        uv = model.uvs.float()
        self.uv = torch.stack([uv[:, 0], 1 - uv[:, 1]], -1).contiguous()  # OBJ bottom-left -> texture row 0 at top
        self.adj = triangle_adjacency(self.tri)
        self.region_w = model.region(region).float()[:, None]  # (V,1)
        s = r / float(seq.width)
        K = torch.as_tensor(np.asarray(seq.K), dtype=torch.float32).clone()
        # seq.K has pixel centres at integers (OpenCV); the renderer puts them at +0.5
        K[:, 0, 2] += 0.5
        K[:, 1, 2] += 0.5
        K[:, :2] *= s
        self.K = K
        self.w2c = torch.as_tensor(np.asarray(seq.world_to_cam), dtype=torch.float32)
        self.K_crop = torch.as_tensor(np.asarray(seq.K), dtype=torch.float32)
        self.shape = torch.as_tensor(np.asarray(seq.shape), dtype=torch.float32)

    def vertices(self, expr: Tensor, pose: Tensor, transl: Tensor):
        """Posed model for a batch: HeadOutput with (B,V,3) vertices."""
        B = expr.shape[0]
        return self.model(self.shape[None].expand(B, -1), expr, pose, transl)

    def uv_coords(self, verts: Tensor, idx: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """(pos (B,V,4), rast (B,r,r,4), per-pixel texture uv (B,r,r,2))."""
        pos = world_to_clip(verts, self.K[idx], self.w2c[idx], self.r, self.r)
        rast, _ = rasterize(pos, self.tri, (self.r, self.r))
        uvp = interpolate(self.uv, rast, self.uv_tri)[0]
        return pos, rast, uvp

    def render(self, verts: Tensor, idx: np.ndarray, tex: Tensor, sh: Tensor) -> dict:
        """Shaded image (B,r,r,3), antialiased coverage alpha (B,r,r,1), region weight (B,r,r,1), hard coverage."""
        pos, rast, uvp = self.uv_coords(verts, idx)
        albedo = texture(tex[None], uvp, filter_mode="linear", boundary_mode="clamp")
        R = self.w2c[idx, :3, :3]
        n_cam = vertex_normals(verts, self.model.faces) @ R.transpose(-1, -2)
        attrs = torch.cat([n_cam, self.region_w[None].expand(verts.shape[0], -1, -1)], -1).contiguous()
        pix = interpolate(attrs, rast, self.tri)[0]
        n_pix = torch.nn.functional.normalize(pix[..., :3], dim=-1, eps=1e-12)
        cover = (rast[..., 3:4] > 0).float()
        shaded = albedo * sh_irradiance(n_pix, sh) * cover
        # one antialias call for colour and coverage: both get silhouette-edge gradients to pos
        aa = antialias(torch.cat([shaded, cover], -1).contiguous(), rast, pos, self.tri, self.adj)
        return dict(image=aa[..., :3], alpha=aa[..., 3:4], region=pix[..., 3:4].detach().clamp(0, 1) * cover, cover=cover, pos=pos)


def _white_sh() -> Tensor:
    """(9,3) SH giving irradiance 1 for every normal (only the constant band)."""
    sh = torch.zeros(9, 3)
    sh[0] = 1.0 / SH_C[0]
    return sh


def _face_box(pos: Tensor, region: Tensor, r: int, margin: float) -> Tensor:
    """(B,r,r,1) 0/1 mask of the box around the projected ``region`` vertices (pos (B,V,4) clip)."""
    with torch.no_grad():
        ndc = pos[..., :2] / pos[..., 3:4].clamp_min(1e-6)
        px = (ndc + 1) * 0.5 * r  # continuous pixel coordinates
        p = px[:, region]
        lo, hi = p.min(1).values, p.max(1).values  # (B,2)
        pad = (hi - lo) * margin
        lo, hi = lo - pad, hi + pad
        c = torch.arange(r, dtype=pos.dtype) + 0.5
        inx = (c[None] >= lo[:, :1]) & (c[None] <= hi[:, :1])  # (B,r) columns
        iny = (c[None] >= lo[:, 1:]) & (c[None] <= hi[:, 1:])  # (B,r) rows
        return (iny[:, :, None] & inx[:, None, :]).float()[..., None]


# ------------------------------------------------------------------------------------------ texture init
def _backproject_albedo(rend: _Renderer, params: dict, img: Tensor, msk: Tensor, size: int, batch: int) -> Tensor:
    """(size,size,3) albedo from averaging masked crop pixels into the texels they see; holes filled smoothly."""
    import cv2

    acc = torch.zeros(size * size, 3, dtype=torch.float64)
    cnt = torch.zeros(size * size, dtype=torch.float64)
    N = img.shape[0]
    with torch.no_grad():
        for s in range(0, N, batch):
            idx = np.arange(s, min(N, s + batch))
            verts = rend.vertices(params["expression"][idx], params["pose"][idx], params["transl"][idx]).vertices
            _, rast, uvp = rend.uv_coords(verts, idx)
            # interior pixels only (eroded mask) so background does not bleed into the edge texels
            ok = (rast[..., 3] > 0) & (msk[idx, ..., 0] > 0.99)
            t = uvp[ok].clamp(0, 1 - 1e-6)
            ti = (t[:, 1] * size).long() * size + (t[:, 0] * size).long()
            acc.index_add_(0, ti, img[idx][ok].double())
            cnt.index_add_(0, ti, torch.ones_like(ti, dtype=torch.float64))
    acc, cnt = acc.view(size, size, 3).numpy(), cnt.view(size, size).numpy()
    if cnt.sum() == 0:
        return torch.full((size, size, 3), 0.5)
    out = np.where(cnt[..., None] > 0, acc / np.maximum(cnt, 1)[..., None], 0.0)
    filled = cnt > 0
    mean = acc.sum((0, 1)) / cnt.sum()
    # pull-push style hole filling: progressively wider normalised blurs
    for sigma in (1.5, 4.0, 12.0, 40.0):
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


# ------------------------------------------------------------------------------------------ errors
def _masked_errors(rend: _Renderer, pa: dict, pb: dict, img: Tensor, msk: Tensor, tex: Tensor, sh: Tensor,
                   batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean |render - image| (0..255) of two parameter sets over one shared pixel set.

    The pixel set is the foreground mask intersected with the union of both renders' face-region
    footprints, so neither parameter set chooses where it is judged.
    """
    N = img.shape[0]
    ea, eb = np.zeros(N), np.zeros(N)
    with torch.no_grad():
        for s in range(0, N, batch):
            idx = np.arange(s, min(N, s + batch))
            ra = rend.render(rend.vertices(pa["expression"][idx], pa["pose"][idx], pa["transl"][idx]).vertices, idx, tex, sh)
            rb = rend.render(rend.vertices(pb["expression"][idx], pb["pose"][idx], pb["transl"][idx]).vertices, idx, tex, sh)
            w = (torch.maximum(ra["region"], rb["region"]) > 0.5).float() * (msk[idx] > 0.5).float()
            den = w.sum((1, 2, 3)).clamp_min(1.0)
            for e, rr in ((ea, ra), (eb, rb)):
                e[idx] = ((rr["image"] - img[idx]).abs().mean(-1, keepdim=True) * w).sum((1, 2, 3)).div(den).numpy() * 255.0
    return ea, eb


# ------------------------------------------------------------------------------------------ main
def _params_from_seq(seq: TrackedSequence) -> dict:
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32).clone()  # noqa: E731
    return dict(expression=f(seq.expression), pose=f(seq.pose), transl=f(seq.transl))


def _tv(tex: Tensor) -> Tensor:
    return (tex[1:] - tex[:-1]).pow(2).mean() + (tex[:, 1:] - tex[:, :-1]).pow(2).mean()


def refine_photometric(model: HeadModel, seq: TrackedSequence, images: ImageSource, masks: ImageSource,
                       config: Optional[PhotometricConfig] = None, progress: bool = True,
                       landmarks: Optional[np.ndarray] = None) -> PhotometricResult:
    """Refine a landmark fit photometrically; see the module docstring for the objective.

    Args:
        model: the head model the sequence was fitted with (any :class:`HeadModel`).
        seq: landmark-fit sequence (N frames, square ``width`` x ``height`` crops, K in crop pixels).
        images: (N,H,W,3) uint8 RGB crops, or a callable ``f(indices) -> (B,H,W,3)`` uint8.
        masks: (N,H,W) uint8 foreground masks (255 = person), or a callable like ``images``.
        config: :class:`PhotometricConfig` (defaults when None).
        progress: show a tqdm bar.
        landmarks: optional (N,478,2) detected landmarks in crop pixels (OpenCV, centres at
            integers) for the landmark term; default: the landmark fit's own projected landmarks.

    Returns:
        :class:`PhotometricResult` with the refined sequence, albedo, lighting and per-frame errors.
    """
    cfg = config or PhotometricConfig()
    cfg.validate()
    if not isinstance(model, HeadModel):
        raise BadInputError(f"model must be a HeadModel, got {type(model).__name__}")
    if not isinstance(seq, TrackedSequence):
        raise BadInputError(f"seq must be a TrackedSequence, got {type(seq).__name__}")
    _check_model(model, seq)
    if cfg.region not in model.region_names:
        raise BadInputError(f"model {model.name!r} has no region {cfg.region!r} (regions: {', '.join(model.region_names)})")
    t_start = time.perf_counter()
    N, r, B = seq.num_frames, int(cfg.resolution), int(cfg.batch_frames)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    img, msk = _load_inputs(images, masks, seq, r)
    rend = _Renderer(model, seq, r, cfg.region)
    init = _params_from_seq(seq)
    cur = {k: v.clone() for k, v in init.items()}
    region_idx = model.region(cfg.region)
    lo_e, hi_e = model.expression_range

    with torch.no_grad():  # landmark targets in crop pixels
        if landmarks is not None:
            lm_t = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)
            if lm_t.shape != (N, 478, 2):
                raise BadInputError(f"landmarks must be (N, 478, 2) crop pixels with N = {N}, got {tuple(lm_t.shape)}")
        else:
            lm_t = torch.cat([project(rend.vertices(init["expression"][i], init["pose"][i], init["transl"][i]).landmarks,
                                      rend.K_crop[i], rend.w2c[i])[0] for i in np.array_split(np.arange(N), max(1, N // B))])
    use_lmk = model.has_landmarks and cfg.w_landmark > 0

    tex = _backproject_albedo(rend, init, img, msk, int(cfg.texture_size), B).requires_grad_(True)
    sh = _white_sh().requires_grad_(True)
    opt_app = torch.optim.Adam([dict(params=[tex], lr=cfg.lr_texture), dict(params=[sh], lr=cfg.lr_lighting)])

    chunks = [np.arange(s, min(N, s + B)) for s in range(0, N, B)]
    total = cfg.epochs * len(chunks)
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="photometric", unit="batch", leave=False)

    def batch_loss(idx: np.ndarray, e: Tensor, p: Tensor, t: Tensor) -> Tensor:
        out = rend.vertices(e, p, t)
        rr = rend.render(out.vertices, idx, tex, sh)
        m = msk[idx]
        # photometric: robust L1 on face pixels inside the mask
        w = rr["region"] * (m > 0.5).float()
        diff = torch.sqrt((rr["image"] - img[idx]).pow(2).sum(-1, keepdim=True) + 1e-6)
        loss = cfg.w_photo * (diff * w).sum() / w.sum().clamp_min(1.0)
        if cfg.w_silhouette > 0:
            box = _face_box(rr["pos"], region_idx, r, cfg.silhouette_margin)
            loss = loss + cfg.w_silhouette * ((rr["alpha"] - m).pow(2) * box).sum() / box.sum().clamp_min(1.0)
        if use_lmk:
            lm = project(out.landmarks, rend.K_crop[idx], rend.w2c[idx])[0]
            loss = loss + cfg.w_landmark * (lm - lm_t[idx]).pow(2).sum(-1).mean() / float(seq.width) ** 2
        e0, p0, t0 = init["expression"][idx], init["pose"][idx], init["transl"][idx]
        loss = loss + cfg.w_expression_reg * (e - e0).pow(2).sum(-1).mean()
        loss = loss + cfg.w_pose_reg * (p - p0).pow(2).sum((-1, -2)).mean() + cfg.w_transl_reg * (t - t0).pow(2).sum(-1).mean()
        if len(idx) > 1 and cfg.w_temporal > 0:
            loss = loss + cfg.w_temporal * ((e[1:] - e[:-1]).pow(2).sum(-1).mean() + 10 * (p[1:] - p[:-1]).pow(2).sum((-1, -2)).mean())
        return loss + cfg.w_texture_tv * _tv(tex)

    for epoch in range(cfg.epochs):
        order = rng.permutation(len(chunks))
        for ci in order:
            idx = chunks[ci]
            if epoch == 0 and cfg.appearance_iters > 0:  # let the appearance settle before geometry moves
                for _ in range(cfg.appearance_iters):
                    opt_app.zero_grad()
                    loss = batch_loss(idx, cur["expression"][idx], cur["pose"][idx], cur["transl"][idx])
                    loss.backward()
                    opt_app.step()
                    losses.append(float(loss))
            e = cur["expression"][idx].clone().requires_grad_(True)
            p = cur["pose"][idx].clone().requires_grad_(True)
            t = cur["transl"][idx].clone().requires_grad_(True)
            opt = torch.optim.Adam([dict(params=[e], lr=cfg.lr_expression), dict(params=[p], lr=cfg.lr_pose),
                                    dict(params=[t], lr=cfg.lr_transl)])
            for _ in range(cfg.iters_per_batch):
                opt.zero_grad()
                opt_app.zero_grad()
                loss = batch_loss(idx, e, p, t)
                loss.backward()
                opt.step()
                opt_app.step()
                with torch.no_grad():
                    e.clamp_(lo_e, hi_e)
                    tex.clamp_(0, 1)
                losses.append(float(loss))
            cur["expression"][idx], cur["pose"][idx], cur["transl"][idx] = e.detach(), p.detach(), t.detach()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if bar is not None:
        bar.close()

    tex_d, sh_d = tex.detach(), sh.detach()
    err_before, err_after = _masked_errors(rend, init, cur, img, msk, tex_d, sh_d, B)
    out_seq = replace(seq, expression=cur["expression"].numpy().astype(np.float32), pose=cur["pose"].numpy().astype(np.float32),
                      transl=cur["transl"].numpy().astype(np.float32), lighting=sh_d.numpy().astype(np.float32))
    return PhotometricResult(sequence=out_seq, albedo=tex_d.numpy().astype(np.float32), lighting=sh_d.numpy().astype(np.float32),
                             errors_before=err_before, errors_after=err_after, losses=losses,
                             seconds=time.perf_counter() - t_start)


def render_sequence_frames(model: HeadModel, seq: TrackedSequence, albedo: np.ndarray, lighting: np.ndarray,
                           idx: np.ndarray, resolution: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Render frames ``idx`` of ``seq`` with an albedo (Ht,Wt,3) and SH lighting (9,3).

    Returns (B,R,R,3) uint8 images on black and (B,R,R) float coverage, R = ``resolution`` or the crop size.
    Used for before/after pictures and by tests.
    """
    _check_model(model, seq)
    idx = np.asarray(idx, dtype=np.int64)
    r = int(resolution or seq.width)
    rend = _Renderer(model, seq, r, "face" if "face" in model.region_names else model.region_names[0])
    p = _params_from_seq(seq)
    with torch.no_grad():
        verts = rend.vertices(p["expression"][idx], p["pose"][idx], p["transl"][idx]).vertices
        rr = rend.render(verts, idx, torch.as_tensor(albedo, dtype=torch.float32), torch.as_tensor(lighting, dtype=torch.float32))
    img = (rr["image"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return img, rr["alpha"][..., 0].numpy()

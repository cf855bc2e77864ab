"""State of the photometric refinement (:mod:`avatar3d.tracking.photometric`): what it compares with
(:class:`PhotometricTargets`), the per-frame geometry it changes (:class:`FrameChanges`) and the
sequence's appearance (:class:`Appearance`).

Shapes: N frames, B frames in a mini-batch, r x r render resolution, S x S crops, E expression
coefficients, J joints, Vs vertices of the drawn sub-mesh, T x T albedo texture.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._tensor import f32
from ..models.base import HeadModel
from ..render.head import SubmeshPoser
from ..train import RowAdam
from .landmark_model import LandmarkHead

__all__ = ["PhotometricTargets", "FrameChanges", "Appearance", "EYE_LEFT", "EYE_RIGHT"]

#: MediaPipe face-mesh eye corners, for the per-frame inter-ocular distance.
EYE_LEFT, EYE_RIGHT = [33, 133], [263, 362]


class PhotometricTargets:
    """The crops, person masks, cameras and detected landmarks of N frames, at the render resolution.

    Args:
        images: (N, S, S, 3) uint8 RGB crops; masks: (N, S, S) uint8 (255 = person) or floats in [0, 1];
        landmarks: (N, 478, 2) detections in crop pixels; valid: (N,) bool;
        K: (N, 3, 3) crop intrinsics (crop pixels); world_to_cam: (4, 4); r: render side in pixels.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, K: np.ndarray,
                 world_to_cam: np.ndarray, r: int):
        self.S, self.r, self.N = images.shape[1], int(r), len(images)
        self.img = torch.as_tensor(np.stack([self._small(x) for x in images]), dtype=torch.float32) / 255.0  #: (N,r,r,3) in [0,1]
        m = np.stack([self._small(np.asarray(x, np.float32)) for x in masks])
        self.msk = torch.as_tensor(m / (255.0 if m.max() > 1.5 else 1.0), dtype=torch.float32)[..., None]  #: (N,r,r,1) in [0,1]
        self.K, self.w2c = f32(K), f32(world_to_cam)
        self.lm_det, self.vmask = f32(landmarks), f32(valid)  #: (N,478,2) crop pixels, (N,) 0/1
        iod = (self.lm_det[:, EYE_LEFT].mean(1) - self.lm_det[:, EYE_RIGHT].mean(1)).norm(dim=-1)
        # Frames without a detection get the median inter-ocular distance (their landmark term is off anyway).
        fill = iod[self.vmask > 0].median() if valid.any() else torch.tensor(float(self.S) / 4)
        self.iod = torch.where(self.vmask > 0, iod, fill).clamp_min(1.0)  #: (N,) crop pixels

    def _small(self, a: np.ndarray) -> np.ndarray:
        """A crop area-downsampled to r x r."""
        import cv2

        return a if a.shape[0] == self.r else cv2.resize(a, (self.r, self.r), interpolation=cv2.INTER_AREA)


class FrameChanges:
    """Per-frame changes of expression, joint rotations and translation from the landmark fit, and their posing.

    The changes (``d_e`` (N,E), ``d_p`` (N,J,3) rad, ``d_t`` (N,3) m) are what the joint stage optimises,
    row by row (:class:`~avatar3d.train.RowAdam`); the landmark fit (``e0``, ``p0``, ``t0``) stays fixed.

    Args:
        model: the head model; poser: poses the drawn sub-mesh for the fit's identity;
        shape (S,), expression (N,E), pose (N,J,3), transl (N,3): the landmark fit;
        landmark_head: where landmarks are compared as the landmark fit saw them (MediaPipe's
            measured view of the model), or None to use the sub-mesh's own landmark points.
    """

    def __init__(self, model: HeadModel, poser: SubmeshPoser, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                 transl: np.ndarray, landmark_head: Optional[LandmarkHead]):
        self.poser, self.lhead = poser, landmark_head
        self.e0, self.p0, self.t0 = f32(expression), f32(pose), f32(transl)
        self.beta = f32(shape).reshape(-1)
        self.lo, self.hi = model.expression_range
        self.bounded = bool(np.isfinite(self.lo) and np.isfinite(self.hi))
        self.d_e, self.d_p, self.d_t = torch.zeros_like(self.e0), torch.zeros_like(self.p0), torch.zeros_like(self.t0)
        self.row_opts: list[RowAdam] = []

    @property
    def deltas(self) -> tuple[Tensor, Tensor, Tensor]:
        """The stored changes (d_e, d_p, d_t), (N, ...) each."""
        return self.d_e, self.d_p, self.d_t

    def posed(self, idx: np.ndarray, de: Optional[Tensor] = None, dp: Optional[Tensor] = None,
              dt: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """(B,Vs,3) posed sub-mesh vertices and (B,478,3) landmarks (m) of frames idx with changes (default: stored ones)."""
        de = self.d_e[idx] if de is None else de
        dp = self.d_p[idx] if dp is None else dp
        dt = self.d_t[idx] if dt is None else dt
        e = self.e0[idx] + de
        if self.bounded:
            e = e.clamp(self.lo, self.hi)
        v, lmk = self.poser(e, self.p0[idx] + dp, self.t0[idx] + dt)
        if self.lhead is not None:  # landmarks as the landmark fit sees them (MediaPipe's measured view of the model)
            lmk = self.lhead(self.beta, e, self.p0[idx] + dp, self.t0[idx] + dt)[0]
        return v, lmk

    def initial(self, idx: np.ndarray) -> Tensor:
        """(B,Vs,3) sub-mesh vertices of the landmark fit."""
        return self.poser(self.e0[idx], self.p0[idx], self.t0[idx])[0]

    def current(self, idx: np.ndarray) -> Tensor:
        """(B,Vs,3) sub-mesh vertices with the stored changes."""
        return self.posed(idx)[0]

    def leaves(self, idx: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """Copies of the stored changes of frames idx that collect a gradient (one optimiser step)."""
        return tuple(x[idx].clone().requires_grad_(True) for x in self.deltas)

    def start_optimisers(self, lrs: tuple[float, float, float], steps: int) -> None:
        """Row-wise Adam for (d_e, d_p, d_t) at learning rates ``lrs``, decaying over ``steps`` steps per frame."""
        self.row_opts = [RowAdam(d, lr, steps) for d, lr in zip(self.deltas, lrs)]

    def step(self, idx: np.ndarray, grads: tuple[Tensor, Tensor, Tensor]) -> None:
        """Step frames idx with the gradients of their :meth:`leaves`; keep expressions inside the model's range."""
        with torch.no_grad():
            it = torch.as_tensor(idx)
            for ro, g in zip(self.row_opts, grads):
                ro.step(it, g)
            if self.bounded:
                self.d_e[idx] = (self.e0[idx] + self.d_e[idx]).clamp(self.lo, self.hi) - self.e0[idx]

    def smooth(self) -> None:
        """One [1, 2, 1] / 4 filter pass along time over the changes (ends [2, 1] / 3)."""
        for d in self.deltas:
            d.copy_(smooth121(d))

    def revert(self, frames: np.ndarray) -> None:
        """Put frames ((N,) bool) back to the landmark fit."""
        rv = torch.as_tensor(frames)
        self.d_e[rv], self.d_p[rv], self.d_t[rv] = 0.0, 0.0, 0.0

    def reset(self) -> None:
        """Put every frame back to the landmark fit."""
        for d in self.deltas:
            d.zero_()

    def final(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N,E) expression (inside the model's range), (N,J,3) pose, (N,3) translation."""
        e_out = self.e0 + self.d_e
        if self.bounded:
            e_out = e_out.clamp(self.lo, self.hi)
        return e_out.numpy(), (self.p0 + self.d_p).numpy(), (self.t0 + self.d_t).numpy()


def smooth121(x: Tensor) -> Tensor:
    """(N, ...) x filtered with [1, 2, 1] / 4 along frames (ends use [2, 1] / 3)."""
    if x.shape[0] < 3:
        return x.clone()
    y = x.clone()
    y[1:-1] = (x[:-2] + 2 * x[1:-1] + x[2:]) / 4
    y[0] = (2 * x[0] + x[1]) / 3
    y[-1] = (2 * x[-1] + x[-2]) / 3
    return y


class Appearance:
    """Albedo texture (T,T,3) in [0,1] and SH lighting (9,3) of a sequence, with the torch Adam that fits them.

    Args:
        tex, sh: starting values (copied).
    """

    def __init__(self, tex: Tensor, sh: Tensor):
        self.tex = tex.detach().clone().requires_grad_(True)
        self.sh = sh.detach().clone().requires_grad_(True)
        self.opt: Optional[torch.optim.Optimizer] = None

    def restart(self, lr_texture: float, lr_sh: float) -> None:
        """A fresh Adam (no moments) at these learning rates: each phase of the schedule starts one."""
        self.opt = torch.optim.Adam([dict(params=[self.tex], lr=lr_texture), dict(params=[self.sh], lr=lr_sh)])

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One Adam step; the albedo stays in [0, 1]."""
        self.opt.step()
        with torch.no_grad():
            self.tex.clamp_(0, 1)

    def values(self) -> tuple[Tensor, Tensor]:
        """(tex, sh) without gradient, sharing storage with the parameters."""
        return self.tex.detach(), self.sh.detach()

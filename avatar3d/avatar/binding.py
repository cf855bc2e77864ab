"""Gaussians bound to the head model's triangles: each lives in its parent triangle's local frame.

The binding follows GaussianAvatars (Qian et al. 2024): every posed triangle gets an orthonormal frame
and a size, and a Gaussian stores its mean, rotation and scale *relative* to that frame, so whatever
moves the mesh (tracked or hand-set expression, jaw, head pose) moves, turns and stretches the
Gaussians with it:

* **origin**: the triangle's centroid;
* **axes** (the columns of ``rotation``): ``x`` along the first edge ``v1 - v0``, ``z`` the unit normal
  ``(v1 - v0) x (v2 - v0)`` (the model's winding: outwards), ``y = z x x`` (right-handed);
* **size** ``scale``: the mean of the first edge's length and the triangle's height over it
  (GaussianAvatars' ``face_scaling``), in metres; a triangle twice as large doubles its Gaussians'
  offsets and scales.

A bound Gaussian ``k`` on triangle ``t = parent[k]`` is posed as

    mean_k   = centroid_t + scale_t * rotation_t @ offset_k           (offset in triangle units)
    rot_k    = rotation_t * local_rotation_k                         (quaternions, wxyz)
    scales_k = scale_t * exp(log_scale_k)                            (metres)

:func:`pose_gaussians` is that map, pure and batched; :func:`bind_points` is its inverse for points
(what initialisation and tests use). :func:`pose_on_mesh` is both steps from posed vertices; when nothing
needs a gradient (rendering) it runs them fused in the CPU extension (``csrc/gs_pose_cpu.cpp``): one pass per
Gaussian instead of a dozen frame- and Gaussian-sized intermediates. Shapes: B poses, V vertices, F triangles,
N Gaussians.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as tF
from torch import Tensor

from ..geometry import matrix_to_quaternion
from ..render.gaussians import cpu_extension

__all__ = ["TriangleFrames", "triangle_frames", "PosedGaussians", "pose_gaussians", "pose_on_mesh", "bind_points",
           "quaternion_multiply"]

_EPS = 1e-12


class TriangleFrames(NamedTuple):
    """Local frames of posed triangles (B poses, F triangles)."""

    centre: Tensor  #: (B, F, 3) centroids, metres
    rotation: Tensor  #: (B, F, 3, 3) columns x (first edge), y, z (normal); local -> world
    scale: Tensor  #: (B, F) triangle size in metres (see the module docstring)


class PosedGaussians(NamedTuple):
    """World-space Gaussians of B poses, in the rasterizer's conventions."""

    means: Tensor  #: (B, N, 3) metres
    quats: Tensor  #: (B, N, 4) unit quaternions, wxyz
    scales: Tensor  #: (B, N, 3) standard deviations along the rotated axes, metres


def triangle_frames(vertices: Tensor, faces: Tensor) -> TriangleFrames:
    """Frames of every triangle of posed ``vertices`` (B, V, 3) or (V, 3); ``faces`` (F, 3) int.

    Degenerate triangles get a finite (arbitrary) frame and a size floored at 1e-12 m, never NaN.
    """
    v = vertices if vertices.ndim == 3 else vertices[None]
    tri = v[:, faces.long()]  # (B, F, 3, 3): corner, xyz
    e0 = tri[:, :, 1] - tri[:, :, 0]
    e1 = tri[:, :, 2] - tri[:, :, 0]
    x = tF.normalize(e0, dim=-1, eps=_EPS)
    z = tF.normalize(torch.linalg.cross(e0, e1, dim=-1), dim=-1, eps=_EPS)
    y = torch.linalg.cross(z, x, dim=-1)
    rotation = torch.stack([x, y, z], -1)
    height = (e1 * y).sum(-1).abs()
    scale = (0.5 * (e0.norm(dim=-1) + height)).clamp_min(_EPS)
    return TriangleFrames(tri.mean(2), rotation, scale)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of (..., 4) wxyz quaternions (rotate by ``b``, then by ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)


def pose_gaussians(frames: TriangleFrames, parent: Tensor, offset: Tensor, rotation: Tensor, log_scale: Tensor) -> PosedGaussians:
    """World Gaussians from bound ones (the map in the module docstring).

    Args:
        frames: :func:`triangle_frames` of the posed mesh (B poses).
        parent: (N,) int64 triangle of each Gaussian.
        offset: (N, 3) or (B, N, 3) mean in the parent's frame, in triangle units (``scale`` = 1).
        rotation: (N, 4) local rotation, wxyz, any non-zero norm.
        log_scale: (N, 3) log of the scales in triangle units.
    Returns:
        :class:`PosedGaussians` (B, N, ...), differentiable in every input (the frames too).
    """
    R = frames.rotation[:, parent]  # (B, N, 3, 3)
    s = frames.scale[:, parent, None]  # (B, N, 1)
    off = offset if offset.ndim == 3 else offset[None]
    means = frames.centre[:, parent] + s * (R @ off[..., None])[..., 0]
    q_frame = matrix_to_quaternion(R)
    quats = quaternion_multiply(q_frame, tF.normalize(rotation, dim=-1, eps=_EPS)[None].expand_as(q_frame))
    scales = s * torch.exp(log_scale)[None]
    return PosedGaussians(means, quats, scales)


def pose_on_mesh(vertices: Tensor, faces: Tensor, parent: Tensor, offset: Tensor, rotation: Tensor, log_scale: Tensor,
                 expr_offset: Optional[Tensor] = None, drive: Optional[Tensor] = None) -> PosedGaussians:
    """``pose_gaussians(triangle_frames(vertices, faces), parent, offset', rotation, log_scale)``.

    ``vertices`` (B, V, 3) posed mesh; the rest as :func:`pose_gaussians`, with optional offset blendshapes:
    ``offset' = offset + einsum("nek,be->bnk", expr_offset, drive)`` for ``expr_offset`` (N, K, 3) and ``drive``
    (B, K). Forward-only CPU calls (grad mode off, or no input requiring gradients) use the fused extension
    kernel: same maths, float rounding aside.
    """
    v = vertices if vertices.ndim == 3 else vertices[None]
    shapes = (expr_offset, drive) if expr_offset is not None else ()
    tensors = (v, offset, rotation, log_scale) + shapes
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    ext = cpu_extension() if v.device.type == "cpu" and not needs_grad else None
    if ext is None or len({t.dtype for t in tensors}) != 1 or v.dtype not in (torch.float32, torch.float64):
        if expr_offset is not None:
            offset = offset + torch.einsum("nek,be->bnk", expr_offset, drive)
        return pose_gaussians(triangle_frames(v, faces), parent, offset, rotation, log_scale)
    c = lambda t: t.contiguous()  # noqa: E731
    none = v.new_zeros(0)
    eo, dr = (c(expr_offset), c(drive)) if expr_offset is not None else (none, none)
    means, quats, scales = ext.pose_forward(c(v), c(faces.long()), c(parent.long()), c(offset), c(rotation),
                                            c(log_scale), eo, dr)
    return PosedGaussians(means, quats, scales)


def bind_points(frames: TriangleFrames, parent: Tensor, points: Tensor) -> Tensor:
    """(N, 3) offsets in triangle units that :func:`pose_gaussians` maps back to ``points`` (N, 3) metres,
    for triangles ``parent`` (N,) of the first pose in ``frames``."""
    R = frames.rotation[0, parent]
    return ((R.transpose(-1, -2) @ (points - frames.centre[0, parent])[..., None])[..., 0]) / frames.scale[0, parent, None]

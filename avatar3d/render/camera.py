"""Camera helpers: OpenCV/gsplat intrinsics + world->camera matrices to nvdiffrast clip space.

Conventions (the same as gsplat, so mesh and Gaussian renders line up):

* ``viewmat`` (..., 4, 4) maps world to camera coordinates; the camera is OpenCV-style:
  x right, y down, z forward (points in front of the camera have z > 0);
* ``K`` (..., 3, 3) maps camera points to continuous pixel coordinates ``(u, v)`` where pixel
  ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)``, so its centre is ``(j + 0.5, i + 0.5)``
  (gsplat's convention; for a calibration with pixel centres at integers add 0.5 to cx, cy);
* image row 0 is the TOP row (smallest v).

Clip space follows nvdiffrast: NDC ``x = 2u/W - 1`` and ``y = 2v/H - 1``, i.e. NOT flipped: the
top image row (v = 0) is NDC ``y = -1``, which is exactly the row nvdiffrast writes first
(its row 0 is ``y = -1``). So ``rasterize`` output row 0 is the top of the picture and no flip
is needed anywhere. ``z/w`` is -1 at ``near`` and +1 at ``far`` (OpenGL depth range), ``w`` is the
camera-space depth z. (Screen-space winding is mirrored w.r.t. OpenGL's y-up, which does not
matter: nothing culls by winding.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import BadInputError

__all__ = ["projection_matrix", "full_projection", "world_to_clip", "look_at", "intrinsics_from_fov"]


def projection_matrix(K: Tensor, width: int, height: int, near: float = 0.01, far: float = 100.0) -> Tensor:
    """OpenCV intrinsics K (...,3,3) -> camera-to-clip matrix (...,4,4) for a ``width`` x ``height`` image."""
    K = torch.as_tensor(K)
    if K.shape[-2:] != (3, 3):
        raise BadInputError(f"K must be (..., 3, 3) intrinsics, got {tuple(K.shape)}")
    if not (0 < near < far):
        raise BadInputError(f"need 0 < near < far, got near={near}, far={far}")
    K = K.to(torch.get_default_dtype()) if not K.dtype.is_floating_point else K
    P = K.new_zeros(*K.shape[:-2], 4, 4)
    fx, s, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    # x_ndc = 2u/W - 1 with u = (fx X + s Y)/Z + cx, times w = Z
    P[..., 0, 0] = 2 * fx / width
    P[..., 0, 1] = 2 * s / width
    P[..., 0, 2] = 2 * cx / width - 1
    P[..., 1, 1] = 2 * fy / height
    P[..., 1, 2] = 2 * cy / height - 1
    P[..., 2, 2] = (far + near) / (far - near)
    P[..., 2, 3] = -2 * far * near / (far - near)
    P[..., 3, 2] = 1.0
    return P


def full_projection(K: Tensor, viewmat: Tensor, width: int, height: int, near: float = 0.01, far: float = 100.0) -> Tensor:
    """World-to-clip matrix (...,4,4) = projection_matrix(K) @ viewmat."""
    viewmat = torch.as_tensor(viewmat)
    if viewmat.shape[-2:] != (4, 4):
        raise BadInputError(f"viewmat must be (..., 4, 4) world-to-camera, got {tuple(viewmat.shape)}")
    P = projection_matrix(K, width, height, near, far).to(viewmat)
    return P @ viewmat


def world_to_clip(points: Tensor, K: Tensor, viewmat: Tensor, width: int, height: int, near: float = 0.01,
                  far: float = 100.0) -> Tensor:
    """World points (B,V,3) or (V,3) -> clip-space ``pos`` (B,V,4) for :func:`avatar3d.render.mesh.rasterize`.

    ``K`` (3,3) or (B,3,3), ``viewmat`` (4,4) or (B,4,4); B is broadcast.
    """
    if points.shape[-1] != 3:
        raise BadInputError(f"points must be (B, V, 3) or (V, 3), got {tuple(points.shape)}")
    pts = points if points.ndim == 3 else points[None]
    M = full_projection(torch.as_tensor(K).to(pts), torch.as_tensor(viewmat).to(pts), width, height, near, far)
    if M.ndim == 2:
        M = M[None]
    h = torch.cat([pts, torch.ones_like(pts[..., :1])], -1)
    return h @ M.transpose(-1, -2)


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> Tensor:
    """World-to-camera (4,4) for an OpenCV camera at ``eye`` looking at ``target``, image-up along ``up``."""
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32)
    up = torch.as_tensor(up, dtype=torch.float32)
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)  # OpenCV x = right = forward x up (since y points down)
    if x.norm() < 1e-8:
        raise BadInputError("look_at: up is parallel to the viewing direction")
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z], 0)
    M = torch.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float = 30.0) -> Tensor:
    """Pinhole K (3,3) with square pixels, the principal point at the image centre and vertical FOV ``fov_y_deg``."""
    f = 0.5 * height / torch.tan(torch.deg2rad(torch.tensor(fov_y_deg / 2.0)))
    return torch.tensor([[float(f), 0.0, width / 2.0], [0.0, float(f), height / 2.0], [0.0, 0.0, 1.0]])

"""Camera conventions of the tracker, defined once.

* Head-model / world frame: metres, +Y up, the face looks towards +Z (glTF).
* Camera: OpenCV pinhole (x right, y down, z forward), intrinsics ``K`` in pixels,
  extrinsics ``world_to_cam`` (4x4) so that ``x_cam = R @ X + t``.

A camera on the +Z axis looking back at the face (towards -Z) with the image upright has
``R = diag(1, -1, -1)``: a 180-degree rotation about the X axis (OpenCV's y-down, z-forward
versus the model's y-up, face-towards-+z). The subject's right eye (at -X) then lands on the
image's left, as in a photograph.

``transforms.json`` (NeRF / instant-ngp / VHAP) stores camera-to-world in the OpenGL/Blender
convention (x right, y up, z backward): ``c2w_gl = inv(world_to_cam) @ diag(1, -1, -1, 1)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._tensor import f32

__all__ = ["R_MODEL_TO_CV", "front_camera", "project", "project_landmarks", "cv_to_gl_c2w", "look_at_world_to_cam"]

#: Rotation taking model-frame directions to OpenCV camera directions for a camera on +Z facing -Z.
R_MODEL_TO_CV = np.diag([1.0, -1.0, -1.0])


def front_camera(distance: float) -> np.ndarray:
    """(4, 4) world_to_cam of an upright camera at (0, 0, ``distance``) looking at the origin."""
    if not distance > 0:
        raise ValueError(f"camera distance must be positive metres, got {distance}")
    M = np.eye(4)
    M[:3, :3] = R_MODEL_TO_CV
    M[:3, 3] = -R_MODEL_TO_CV @ np.array([0.0, 0.0, distance])  # t = -R C
    return M


def look_at_world_to_cam(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """(4, 4) OpenCV world_to_cam of a camera at ``eye`` looking at ``target`` with ``up`` upwards (NumPy)."""
    from ..render.camera import look_at  # one definition of the convention, shared with the renderer

    return look_at(np.asarray(eye, np.float64), np.asarray(target, np.float64), np.asarray(up, np.float64)).double().numpy()


def project(points: Tensor, K: Tensor, world_to_cam: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Project world points to pixels.

    Args:
        points: (B, P, 3) metres. K: (B, 3, 3) or (3, 3). world_to_cam: (B, 4, 4) or (4, 4).
    Returns:
        (B, P, 2) pixel coordinates (OpenCV: pixel centres at integers) and (B, P) depth in metres.
    """
    R = world_to_cam[..., :3, :3]
    t = world_to_cam[..., :3, 3]
    cam = points @ R.transpose(-1, -2) + t[..., None, :]
    z = cam[..., 2]
    uv = cam[..., :2] / z.clamp_min(eps)[..., None]
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    u = uv[..., 0] * fx[..., None] + cx[..., None]
    v = uv[..., 1] * fy[..., None] + cy[..., None]
    return torch.stack([u, v], -1), z


def project_landmarks(model, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, transl: np.ndarray,
                      K: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """Pixel positions of a head model's landmarks for per-frame parameters (no gradients).

    The landmarks are those the landmark fit compares with detections
    (:func:`avatar3d.tracking.landmark_model.landmark_head`: MediaPipe's measured view of the model where
    one ships), so NME figures mean the same before and after a refinement.

    Args:
        model: a :class:`~avatar3d.models.base.HeadModel`. shape: (S,) shared identity.
        expression: (N, E). pose: (N, J, 3) axis-angle. transl: (N, 3) metres.
        K: (N, 3, 3) or (3, 3) pixels. world_to_cam: (N, 4, 4) or (4, 4).
    Returns:
        (N, L, 2) float32 pixel coordinates (OpenCV: pixel centres at integers).
    """
    from .landmark_model import landmark_head

    with torch.no_grad():
        pts, _ = landmark_head(model)(f32(shape), f32(expression), f32(pose), f32(transl))
        return project(pts, f32(K), f32(world_to_cam))[0].numpy()


def cv_to_gl_c2w(world_to_cam: np.ndarray) -> np.ndarray:
    """(…, 4, 4) OpenCV world_to_cam -> OpenGL/NeRF camera-to-world."""
    c2w = np.linalg.inv(np.asarray(world_to_cam, np.float64))
    return c2w @ np.diag([1.0, -1.0, -1.0, 1.0])

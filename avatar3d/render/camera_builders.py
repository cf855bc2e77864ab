"""The library's camera builders, each a :class:`~avatar3d.render.camera.Camera` (or its parts).

* :func:`orbit`: a square camera on a sphere around a target (previews, galleries, demo; ``render.preview``'s
  ``orbit_camera`` and ``framing_camera`` hand these to ``render_mesh`` as raster ``(K, viewmat)``);
* :func:`framing`: looks at a mesh's bounding sphere from a direction;
* :func:`frontal`: on +Z, framing a head (the viewer's default view);
* :func:`front_camera`: the tracker's upright extrinsics on +Z, and :data:`R_MODEL_TO_CV`;
* :func:`phone_focal` and :func:`centred_K`: a phone lens and a centred principal point (synthetic clips,
  the landmark fit's crop cameras).

All intrinsics here put pixel centres at integers (the library's convention; see :mod:`avatar3d.render.camera`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .camera import Camera, intrinsics_from_fov, look_at, opencv_intrinsics

__all__ = ["R_MODEL_TO_CV", "front_camera", "look_at_world_to_cam", "orbit", "framing", "frontal",
           "phone_focal", "centred_K"]

#: Rotation taking model-frame directions (+Y up, face towards +Z) to OpenCV camera directions for a camera
#: on +Z facing -Z: a 180-degree turn about X (y down, z forward). The subject's right eye (at -X) then
#: lands on the image's left, as in a photograph.
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
    """(4, 4) float64 OpenCV world_to_cam of a camera at ``eye`` looking at ``target`` with ``up`` upwards (NumPy)."""
    return look_at(np.asarray(eye, np.float64), np.asarray(target, np.float64), np.asarray(up, np.float64)).double().numpy()


def orbit(yaw_deg: float, pitch_deg: float, distance: float, target: Sequence[float], size: int,
                 fov_deg: float = 20.0) -> Camera:
    """A square (``size`` px) float32 camera on a sphere around ``target`` (metres), looking at it.

    yaw 0 / pitch 0 is in front of the face (+Z); positive yaw moves towards the subject's left (+X),
    positive pitch looks from above. ``fov_deg`` is the vertical field of view; the principal point is
    the image centre.
    """
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    t = np.asarray(target, np.float64)
    eye = t + distance * np.array([math.sin(y) * math.cos(p), math.sin(p), math.cos(y) * math.cos(p)])
    return Camera(opencv_intrinsics(intrinsics_from_fov(size, size, fov_deg)), look_at(eye, t), size, size)


def framing(vertices: Tensor, width: int, height: int, direction: Sequence[float] = (0.0, 0.0, 1.0),
                   fov_y_deg: float = 25.0, margin: float = 1.15) -> Camera:
    """A float32 camera looking at the bounding sphere of ``vertices`` (V, 3) from ``direction``, +Y up,
    the sphere (times ``margin``) filling the narrower field of view."""
    v = vertices.detach().reshape(-1, 3).float().cpu()
    lo, hi = v.min(0).values, v.max(0).values
    c = (lo + hi) / 2
    r = float((v - c).norm(dim=-1).max()) * margin
    K = intrinsics_from_fov(width, height, fov_y_deg)
    half = np.deg2rad(fov_y_deg / 2) * min(1.0, width / height)
    dist = r / np.sin(half)
    d = torch.as_tensor(direction, dtype=torch.float32)
    eye = c + d / d.norm() * dist
    return Camera(opencv_intrinsics(K), look_at(eye, c), width, height)


def frontal(verts: np.ndarray, width: int, height: int, fov_deg: float = 25.0, margin: float = 1.25) -> Camera:
    """A float64 camera on +Z looking at a head (``verts`` (V, 3) metres), its box filling 1/``margin`` of the
    frame; the viewer's default view."""
    lo, hi = verts.min(0), verts.max(0)
    c = (lo + hi) / 2
    half = margin * max((hi[1] - lo[1]) / 2, (hi[0] - lo[0]) / 2 * height / width)
    f = (height / 2) / np.tan(np.deg2rad(fov_deg) / 2)
    dist = half / np.tan(np.deg2rad(fov_deg) / 2) + (hi[2] - lo[2]) / 2
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)
    eye = c + np.array([0.0, 0.0, dist])
    w2c = np.eye(4)
    w2c[:3, :3] = R_MODEL_TO_CV  # camera x = +X, y = -Y (down), z = -Z (looking at the face)
    w2c[:3, 3] = -R_MODEL_TO_CV @ eye
    return Camera(K, w2c, width, height)


def phone_focal(width: int, height: int, equivalent_mm: float = 26.0) -> float:
    """Focal length in pixels of a lens with ``equivalent_mm`` 35 mm-equivalent focal (43.27 mm diagonal)."""
    return float(equivalent_mm / 43.267 * np.hypot(width, height))


def centred_K(focal: float, width: int, height: int) -> np.ndarray:
    """(3, 3) float64 intrinsics with ``focal`` pixels and the principal point at the image centre."""
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])

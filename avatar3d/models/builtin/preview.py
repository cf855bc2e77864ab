"""Orbit-camera previews of the built-in head for galleries and tests (no GPU, no display needed).

A thin layer over the project's renderer (:func:`avatar3d.render.preview.render_mesh`): cameras sit
on a sphere around ``target`` at a yaw angle around +Y, and :func:`project` maps 3-D points into the
same image, so landmarks can be drawn over a render.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ...render.camera_builders import orbit
from ...render.preview import render_mesh, to_uint8

__all__ = ["render", "project"]

#: Towards the key light in camera coordinates (x right, y down, z forward): upper left of the camera.
KEY_LIGHT = (-0.45, -0.5, -1.0)


def render(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    size: int = 320,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    fov_deg: float = 22.0,
    distance: float = 0.75,
    target: Sequence[float] = (0.0, -0.02, 0.01),
    uvs: Optional[np.ndarray] = None,
    uv_faces: Optional[np.ndarray] = None,
    texture: Optional[np.ndarray] = None,
    vertex_colors: Optional[np.ndarray] = None,
    background: Sequence[int] = (235, 235, 240),
) -> np.ndarray:
    """(size, size, 3) uint8 image of a triangle mesh seen from an orbit camera.

    Args:
        vertices: (V, 3) metres; faces: (F, 3) int, counter-clockwise seen from outside.
        yaw_deg: camera azimuth around +Y (0 = in front of the face, 90 = at the subject's left).
        distance: camera to ``target`` (metres); fov_deg: vertical field of view.
        uvs/uv_faces/texture: optional (T, 2) UVs (origin bottom-left), (F, 3), (H, W, 3) uint8 albedo.
        vertex_colors: optional (V, 3) float colours in [0, 1] used when no texture is given.
    """
    cam = orbit(yaw_deg, pitch_deg, distance, target, size, fov_deg)
    v = torch.as_tensor(np.asarray(vertices), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(faces, np.int64))
    kw = {}
    if texture is not None and uvs is not None and uv_faces is not None:
        kw = dict(uvs=torch.as_tensor(np.asarray(uvs), dtype=torch.float32), uv_faces=torch.as_tensor(np.asarray(uv_faces, np.int64)),
                  texture_image=torch.as_tensor(np.asarray(texture)[..., :3], dtype=torch.float32) / 255.0)
    elif vertex_colors is not None:
        kw = dict(colors=torch.as_tensor(np.asarray(vertex_colors), dtype=torch.float32))
    bg = [c / 255.0 for c in background]
    with torch.no_grad():
        img = render_mesh(v, f, cam.raster_K, cam.world_to_cam, size, size, light_dir=KEY_LIGHT, ambient=0.3, background=bg, **kw)
    return to_uint8(img)


def project(
    points: np.ndarray,
    *,
    size: int = 320,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    fov_deg: float = 22.0,
    distance: float = 0.75,
    target: Sequence[float] = (0.0, -0.02, 0.01),
) -> np.ndarray:
    """(N, 2) pixel coordinates (x right, y down, pixel centres at integers) of (N, 3) points in a :func:`render`
    image with the same camera."""
    return orbit(yaw_deg, pitch_deg, distance, target, size, fov_deg).to(torch.float64).project(np.asarray(points, np.float64))[0].numpy()

"""A dependency-light preview renderer (Open3D ray casting + Lambert shading) for galleries and tests.

Not the project's rasterizer: it exists so the built-in head can be looked at (and checked with
MediaPipe) without a GPU or a display. Cameras look at the head from a yaw angle around +Y.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def render(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    size: int = 320,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    fov_deg: float = 22.0,
    distance: float = 0.75,
    target=(0.0, -0.02, 0.01),
    uvs: Optional[np.ndarray] = None,
    uv_faces: Optional[np.ndarray] = None,
    texture: Optional[np.ndarray] = None,
    face_colors: Optional[np.ndarray] = None,
    background=(235, 235, 240),
) -> np.ndarray:
    """(size, size, 3) uint8 image of a triangle mesh.

    Args:
        vertices: (V, 3) metres; faces: (F, 3) int.
        yaw_deg: camera azimuth around +Y (0 = in front of the face, 90 = at the subject's left).
        uvs/uv_faces/texture: optional (T, 2) UVs (origin bottom-left), (F, 3), (H, W, 3) uint8 albedo.
        face_colors: optional (F, 3) float colours in [0, 1] used when no texture is given.
    """
    import open3d as o3d

    V = np.ascontiguousarray(vertices, np.float32)
    Fc = np.ascontiguousarray(faces, np.uint32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(V), o3d.core.Tensor(Fc))
    yaw, pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    tgt = np.asarray(target, float)
    eye = tgt + distance * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        fov_deg=fov_deg, center=o3d.core.Tensor(tgt.astype(np.float32)), eye=o3d.core.Tensor(eye.astype(np.float32)),
        up=o3d.core.Tensor(np.array([0, 1, 0], np.float32)), width_px=size, height_px=size,
    )
    ans = scene.cast_rays(rays)
    hit = np.isfinite(ans["t_hit"].numpy())
    prim = ans["primitive_ids"].numpy().astype(np.int64)
    buv = ans["primitive_uvs"].numpy()
    img = np.empty((size, size, 3), np.float32)
    img[:] = np.asarray(background, np.float32) / 255
    if not hit.any():
        return (img * 255).astype(np.uint8)
    p = prim[hit]
    b1, b2 = buv[hit, 0], buv[hit, 1]
    b0 = 1 - b1 - b2
    # Smooth shading: interpolate area-weighted vertex normals.
    vn = np.zeros_like(V)
    fn = np.cross(V[Fc[:, 1]] - V[Fc[:, 0]], V[Fc[:, 2]] - V[Fc[:, 0]])
    for k in range(3):
        np.add.at(vn, Fc[:, k].astype(np.int64), fn)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
    nn = vn[Fc[p, 0]] * b0[:, None] + vn[Fc[p, 1]] * b1[:, None] + vn[Fc[p, 2]] * b2[:, None]
    nn /= np.linalg.norm(nn, axis=1, keepdims=True) + 1e-12
    d = rays.numpy()[hit][:, 3:]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    # Faces seen from behind (e.g. the mouth bag) keep shading by flipping the normal towards the camera.
    flip = (nn * d).sum(1) > 0
    nn[flip] *= -1
    if texture is not None and uvs is not None and uv_faces is not None:
        t = uvs[uv_faces[p]]
        uv = t[:, 0] * b0[:, None] + t[:, 1] * b1[:, None] + t[:, 2] * b2[:, None]
        H, W = texture.shape[:2]
        xi = np.clip((uv[:, 0] * W).astype(int), 0, W - 1)
        yi = np.clip(((1 - uv[:, 1]) * H).astype(int), 0, H - 1)
        albedo = texture[yi, xi, :3].astype(np.float32) / 255
    elif face_colors is not None:
        albedo = np.asarray(face_colors, np.float32)[p]
    else:
        albedo = np.full((len(p), 3), 0.78, np.float32)
    # Key light from upper front-left of the camera, fill light, ambient.
    fwd = (tgt - eye) / np.linalg.norm(tgt - eye)
    right = np.cross(fwd, [0, 1, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    key = -fwd + 0.5 * up - 0.45 * right
    key /= np.linalg.norm(key)
    fill = -fwd + 0.6 * right - 0.1 * up
    fill /= np.linalg.norm(fill)
    lam = 0.78 * np.clip(nn @ key, 0, 1) + 0.25 * np.clip(nn @ fill, 0, 1) + 0.22
    img[hit] = np.clip(albedo * lam[:, None], 0, 1)
    # Open3D's pinhole rays start at the bottom image row; flip to the usual top-down order.
    return (img[::-1] * 255).astype(np.uint8)


def project(
    points: np.ndarray,
    *,
    size: int = 320,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    fov_deg: float = 22.0,
    distance: float = 0.75,
    target=(0.0, -0.02, 0.01),
) -> np.ndarray:
    """(N, 2) pixel coordinates (x right, y down) of 3-D points in a :func:`render` image with the same camera."""
    yaw, pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    tgt = np.asarray(target, float)
    eye = tgt + distance * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    fwd = (tgt - eye) / np.linalg.norm(tgt - eye)
    right = np.cross(fwd, [0, 1, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    d = np.asarray(points, float) - eye
    f = (size / 2) / np.tan(np.deg2rad(fov_deg) / 2)
    z = d @ fwd
    return np.stack([size / 2 + f * (d @ right) / z, size / 2 - f * (d @ up) / z], 1)


def contact_sheet(images: list[np.ndarray], cols: int) -> np.ndarray:
    """Tile equally sized (H, W, 3) images into a grid, row-major."""
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return out

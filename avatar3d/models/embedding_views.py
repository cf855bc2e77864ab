"""The views the landmark embedding renders, and ray casting of a head mesh (Open3D).

:class:`View` is the pinhole camera the embedding looks at a neutral head with (the mesh turned by
yaw and pitch in front of a camera on +Z); :func:`render_view` ray-casts one Lambert-shaded image of
it with per-pixel triangle ids and barycentrics; :class:`RaycastScene` casts rays and finds closest
surface points on a subset of triangles. :mod:`avatar3d.models.embedding` and
:mod:`avatar3d.models.embedding_contours` both build on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..geometry import face_normals_np
from ..render.camera import Camera
from ..render.camera_builders import R_MODEL_TO_CV

__all__ = ["View", "RaycastScene", "frame_view", "project", "render_view", "embedding_points", "uv_to_bary"]

_INVALID = np.uint32(0xFFFFFFFF)  # Open3D's primitive id of a ray that hit nothing


@dataclass
class View:
    """A pinhole camera on +Z looking at ``centre`` after rotating the mesh by yaw then pitch.

    The mesh is rotated about ``centre`` (yaw about +Y, pitch about +X, degrees), the camera stays at
    ``centre + (0, 0, distance)``; pixel (u, v) has its origin top-left, pixel centres at +0.5 (MediaPipe's
    normalised coordinates times the image size). :meth:`camera` is the same view as the library's camera.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 0.6  # metres
    focal: float = 1200.0  # pixels
    width: int = 512
    height: int = 512

    def rotation(self) -> np.ndarray:
        """(3, 3) rotation applied to the mesh (yaw about Y, then pitch about X)."""
        y, p = np.deg2rad(self.yaw), np.deg2rad(self.pitch)
        Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
        return Rx @ Ry

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera-frame points (camera at origin, looking down -Z)."""
        c = np.asarray(self.centre)
        return (pts - c) @ self.rotation().T + np.array([0.0, 0.0, -self.distance])

    def camera(self) -> Camera:
        """This view as a float64 :class:`~avatar3d.render.camera.Camera` (OpenCV axes, pixel centres at
        integers: its pixel ``(u, v)`` is this view's ``(u + 0.5, v + 0.5)``)."""
        R = R_MODEL_TO_CV @ self.rotation()  # the rotated mesh seen by an upright camera on +Z
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ np.asarray(self.centre, np.float64) + np.array([0.0, 0.0, self.distance])
        K = np.array([[self.focal, 0.0, self.width / 2 - 0.5], [0.0, self.focal, self.height / 2 - 0.5], [0.0, 0.0, 1.0]])
        return Camera(K, w2c, self.width, self.height)

    def rays(self, px: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates (MediaPipe's: pixel centres at +0.5) -> (N, 6) float32 rays (origin, unit
        direction) in the world frame."""
        o, d = self.camera().rays_at(np.asarray(px, np.float64) - 0.5)
        return torch.cat([o, d], 1).numpy().astype(np.float32)


def frame_view(vertices: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, size: int = 512, fill: float = 0.85) -> View:
    """A :class:`View` whose image holds the mesh's bounding box (``fill`` of the frame)."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    centre = 0.5 * (lo + hi)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-6))
    distance = 3.0 * extent  # mild perspective, like a phone held at arm's length
    focal = fill * size * distance / extent
    return View(yaw, pitch, tuple(centre), distance, focal, size, size)


def project(points: np.ndarray, view: View) -> np.ndarray:
    """(N, 3) world points -> (N, 2) pixel coordinates in ``view`` (pixel centres at +0.5, as :meth:`View.rays`)."""
    return view.camera().project(np.asarray(points, dtype=np.float64))[0].numpy() + 0.5


class RaycastScene:
    """Open3D ray-casting scene over a subset of triangles; ids map back to the full face list."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, face_ids: np.ndarray):
        import open3d as o3d

        self.o3d = o3d
        self.face_ids = np.asarray(face_ids, dtype=np.int64)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(faces[self.face_ids], dtype=np.uint32)),
        )

    def cast(self, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 6) rays -> full-mesh triangle id (N,) (-1 = miss), barycentrics (N, 3), distance (N,)."""
        r = self.scene.cast_rays(self.o3d.core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
        prim = r["primitive_ids"].numpy()
        hit = prim != _INVALID
        tri = np.full(len(rays), -1, dtype=np.int64)
        tri[hit] = self.face_ids[prim[hit]]
        return tri, uv_to_bary(r["primitive_uvs"].numpy()), r["t_hit"].numpy()

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) or (3,) points -> full-mesh triangle id (N,) of the closest surface point and its
        barycentrics (N, 3) float64 (not clipped: Open3D's can be off by rounding)."""
        q = np.ascontiguousarray(np.reshape(points, (-1, 3)), dtype=np.float32)
        cp = self.scene.compute_closest_points(self.o3d.core.Tensor(q))
        return self.face_ids[cp["primitive_ids"].numpy().astype(np.int64)], uv_to_bary(cp["primitive_uvs"].numpy())


def uv_to_bary(uv: np.ndarray) -> np.ndarray:
    """Open3D's (N, 2) primitive uvs -> (N, 3) float64 barycentrics (point = (1-u-v) A + u B + v C)."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)


def render_view(
    vertices: np.ndarray,
    faces: np.ndarray,
    view: View,
    vertex_colors: Optional[np.ndarray] = None,
    texture: Optional[np.ndarray] = None,
    uvs: Optional[np.ndarray] = None,
    uv_faces: Optional[np.ndarray] = None,
    face_mask: Optional[np.ndarray] = None,
    scene: Optional[RaycastScene] = None,
    background: float = 0.35,
) -> dict[str, np.ndarray]:
    """Ray-cast one image. Returns ``image`` (H, W, 3) uint8 RGB, ``tri`` (H, W) int (-1 = background),
    ``bary`` (H, W, 3). Shading: Lambert (head light + a key light from above) times the albedo
    (vertex colours, texture sampled at interpolated UVs, else light grey)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if scene is None:
        ids = np.flatnonzero(face_mask) if face_mask is not None else np.arange(len(f))
        scene = RaycastScene(v, f, ids)
    H, W = view.height, view.width
    u, vv = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    px = np.stack([u.ravel(), vv.ravel()], 1)
    tri, bary, _ = scene.cast(view.rays(px))
    hit = tri >= 0
    img = np.full((H * W, 3), background)
    if hit.any():
        t, b = tri[hit], bary[hit]
        if texture is not None and uvs is not None and uv_faces is not None:
            uvp = (np.asarray(uvs)[np.asarray(uv_faces)[t]] * b[:, :, None]).sum(1)
            tex = np.asarray(texture)
            tex = tex / 255.0 if tex.dtype == np.uint8 else tex
            th, tw = tex.shape[:2]
            x = np.clip((uvp[:, 0] * tw).astype(int), 0, tw - 1)
            y = np.clip(((1 - uvp[:, 1]) * th).astype(int), 0, th - 1)  # OBJ uv origin is bottom-left
            albedo = tex[y, x, :3]
        elif vertex_colors is not None:
            albedo = (np.asarray(vertex_colors, dtype=np.float64)[f[t]] * b[:, :, None]).sum(1)
        else:
            albedo = np.full((len(t), 3), 0.75)
        n = face_normals_np(v, f[t]) @ view.rotation().T  # normals in the camera frame
        n *= np.where(n[:, 2:3] < 0, -1.0, 1.0)  # two-sided: inner shells (mouth) stay lit
        key = np.array([0.0, 0.5, 1.0]) / np.sqrt(1.25)
        shade = 0.25 + 0.5 * np.clip(n[:, 2], 0, 1) + 0.3 * np.clip(n @ key, 0, 1)
        img[hit] = albedo * shade[:, None]
    return {
        "image": (np.clip(img, 0, 1) * 255).astype(np.uint8).reshape(H, W, 3),
        "tri": tri.reshape(H, W),
        "bary": bary.reshape(H, W, 3),
    }


def embedding_points(vertices: np.ndarray, faces: np.ndarray, lmk_faces: np.ndarray, lmk_bary: np.ndarray) -> np.ndarray:
    """(N, 3) surface points of an embedding on (V, 3) vertices."""
    tri = np.asarray(vertices)[np.asarray(faces)[np.asarray(lmk_faces)]]
    return (tri * np.asarray(lmk_bary)[:, :, None]).sum(1)

"""One camera for the whole library: :class:`Camera`, and the matrices the rasterizers need.

Conventions (the same as gsplat, so mesh and Gaussian renders line up):

* ``world_to_cam`` / ``viewmat`` (..., 4, 4) maps world to camera coordinates; the camera is
  OpenCV-style: x right, y down, z forward (points in front of the camera have z > 0); the world
  (head-model) frame is metres, +Y up, the face looking towards +Z (glTF);
* image row 0 is the TOP row (smallest v).

**Pixel centres.** Inside the library a camera's ``K`` (..., 3, 3) puts the centre of pixel
``(row i, col j)`` at ``(u, v) = (j, i)`` (OpenCV; *pixel centres at integers*): landmarks,
detections, crops, :class:`Camera` and ``params.npz`` all use it. The rasterizers (this module's
:func:`projection_matrix` and everything built on it, the Gaussian rasterizer as gsplat), Open3D
and NeRF-style ``transforms.json`` sample pixel ``(i, j)`` at ``(j + 0.5, i + 0.5)``; their
*raster* intrinsics come from :func:`raster_intrinsics` (:attr:`Camera.raster_K`), the one place
that adds the half pixel. :func:`projection_matrix`, :func:`world_to_clip` and ``render_mesh`` take
raster intrinsics (what :func:`intrinsics_from_fov` builds); :meth:`Camera.to_clip` converts for you.

Clip space follows nvdiffrast: NDC ``x = 2u/W - 1`` and ``y = 2v/H - 1`` (raster ``u, v``), i.e.
NOT flipped: the top image row (v = 0) is NDC ``y = -1``, which is exactly the row nvdiffrast writes
first (its row 0 is ``y = -1``). So ``rasterize`` output row 0 is the top of the picture and no flip
is needed anywhere. ``z/w`` is -1 at ``near`` and +1 at ``far`` (OpenGL depth range), ``w`` is the
camera-space depth z. (Screen-space winding is mirrored w.r.t. OpenGL's y-up, which does not
matter: nothing culls by winding.)

``transforms.json`` (NeRF / instant-ngp / VHAP) stores camera-to-world in the OpenGL/Blender
convention (x right, y up, z backward): ``c2w_gl = inv(world_to_cam) @ diag(1, -1, -1, 1)``
(:func:`cv_to_gl_c2w`, :meth:`Camera.cam_to_world_gl`).

The camera builders (orbit, framing, frontal, phone lenses) are in :mod:`avatar3d.render.camera_builders`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError

__all__ = ["Camera", "scale_pixels", "projection_matrix", "full_projection", "world_to_clip", "look_at", "intrinsics_from_fov", "project",
           "raster_intrinsics", "opencv_intrinsics", "crop_intrinsics", "scale_intrinsics", "cv_to_gl_c2w"]

Array = Union[np.ndarray, Tensor]


def projection_matrix(K: Tensor, width: int, height: int, near: float = 0.01, far: float = 100.0) -> Tensor:
    """Raster intrinsics K (...,3,3) (pixel centres at +0.5) -> camera-to-clip matrix (...,4,4) for a ``width`` x ``height`` image."""
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

    ``K`` (3,3) or (B,3,3) raster intrinsics, ``viewmat`` (4,4) or (B,4,4); B is broadcast.
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
    """Raster K (3,3) (pixel centres at +0.5, for ``render_mesh``) with square pixels, the principal point at the
    image centre and vertical FOV ``fov_y_deg``; :func:`opencv_intrinsics` of it is the library's ``K``."""
    f = 0.5 * height / torch.tan(torch.deg2rad(torch.tensor(fov_y_deg / 2.0)))
    return torch.tensor([[float(f), 0.0, width / 2.0], [0.0, float(f), height / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- intrinsics (NumPy or torch)
def _float_copy(K: Array) -> Array:
    """A float copy of ``K`` of the same kind (tensor or array), keeping a float dtype as it is."""
    if isinstance(K, Tensor):
        return K.clone() if K.dtype.is_floating_point else K.to(torch.get_default_dtype())
    K = np.asarray(K)
    return np.array(K, copy=True) if K.dtype.kind == "f" else K.astype(np.float64)


def raster_intrinsics(K: Array) -> Array:
    """(..., 3, 3) intrinsics with pixel centres at +0.5 (rasterizers, Open3D, ``transforms.json``) from
    the library's ``K`` (pixel centres at integers). A copy, same kind and float dtype as ``K``."""
    Kr = _float_copy(K)
    Kr[..., 0, 2] += 0.5
    Kr[..., 1, 2] += 0.5
    return Kr


def opencv_intrinsics(K_raster: Array) -> Array:
    """Inverse of :func:`raster_intrinsics`: the library's ``K`` (pixel centres at integers)."""
    K = _float_copy(K_raster)
    K[..., 0, 2] -= 0.5
    K[..., 1, 2] -= 0.5
    return K


def crop_intrinsics(K_source: np.ndarray, boxes: np.ndarray, resolution: int) -> np.ndarray:
    """(N, 3, 3) float64 intrinsics of square crops ``boxes`` (N, 3) = (x0, y0, size) in source pixels,
    each resized to ``resolution`` pixels, from the source camera's (3, 3) ``K_source``.

    Pixel centres: source pixel centre x lands at ``(x + 0.5 - x0) * s - 0.5`` in the resized crop.
    """
    s = resolution / boxes[:, 2].astype(np.float64)
    K = np.repeat(np.asarray(K_source, np.float64)[None], len(boxes), 0)
    K[:, 0, :2] *= s[:, None]  # fx and skew
    K[:, 1, 1] *= s
    K[:, 0, 2] = (K[:, 0, 2] + 0.5 - boxes[:, 0]) * s - 0.5
    K[:, 1, 2] = (K[:, 1, 2] + 0.5 - boxes[:, 1]) * s - 0.5
    return K


def scale_intrinsics(K: Array, sx: float, sy: Optional[float] = None) -> Array:
    """(..., 3, 3) intrinsics of the same view resampled by ``sx`` (and ``sy``, default ``sx``) pixels per pixel.

    With pixel centres at integers the principal point maps as ``c * s + 0.5 * s - 0.5``.
    A copy of the same kind (tensor or array) as ``K``.
    """
    sy = sx if sy is None else sy
    K = _float_copy(K)
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    K[..., 0, 2] += 0.5 * sx - 0.5
    K[..., 1, 2] += 0.5 * sy - 0.5
    return K


def scale_pixels(points: Array, s: float) -> Array:
    """Pixel coordinates (..., 2) (centres at integers) of the same points in an image resampled by ``s``."""
    return points * s + 0.5 * s - 0.5


# ----------------------------------------------------------------------------- points and poses
def project(points: Array, K: Array, world_to_cam: Array, eps: float = 1e-6) -> tuple[Array, Array]:
    """Project world points to pixels (pixel centres at integers); NumPy in, NumPy out, tensor in, tensor out.

    Args:
        points: (..., P, 3) metres. K: (..., 3, 3) pixels. world_to_cam: (..., 4, 4). Batch dims broadcast.
        eps: smallest depth divided by (points behind the camera project to garbage, not inf).
    Returns:
        (..., P, 2) pixel coordinates (x right, y down) and (..., P) depth in metres.
    """
    xp = torch if isinstance(points, Tensor) else np
    R = world_to_cam[..., :3, :3]
    t = world_to_cam[..., :3, 3]
    cam = points @ R.swapaxes(-1, -2) + t[..., None, :]
    z = cam[..., 2]
    uv = cam[..., :2] / z.clip(min=eps)[..., None]
    fx, fy, skew = K[..., 0, 0], K[..., 1, 1], K[..., 0, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    # (x fx + y skew) + cx: with skew 0 the added term is an exact zero, as before skew was honoured
    u = (uv[..., 0] * fx[..., None] + uv[..., 1] * skew[..., None]) + cx[..., None]
    v = uv[..., 1] * fy[..., None] + cy[..., None]
    return xp.stack([u, v], -1), z


def cv_to_gl_c2w(world_to_cam: Array) -> Array:
    """(..., 4, 4) OpenCV world_to_cam -> OpenGL/NeRF camera-to-world (x right, y up, z backward).

    NumPy input is computed in float64 (``transforms.json``); a tensor stays in its dtype.
    """
    if isinstance(world_to_cam, Tensor):
        flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=world_to_cam.dtype, device=world_to_cam.device))
        return torch.linalg.inv(world_to_cam) @ flip
    c2w = np.linalg.inv(np.asarray(world_to_cam, np.float64))
    return c2w @ np.diag([1.0, -1.0, -1.0, 1.0])


# ----------------------------------------------------------------------------- the camera
def _as_float_tensor(a: Array, name: str, shape: tuple[int, int]) -> Tensor:
    t = torch.as_tensor(a)
    if not t.dtype.is_floating_point:
        t = t.to(torch.get_default_dtype())
    if t.ndim < 2 or tuple(t.shape[-2:]) != shape:
        raise BadInputError(f"{name} must be (..., {shape[0]}, {shape[1]}), got {tuple(t.shape)}")
    return t


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics, OpenCV world-to-camera, image size.

    Attributes:
        K: (..., 3, 3) intrinsics in pixels, pixel centres at integers (see the module docstring).
        world_to_cam: (..., 4, 4) OpenCV extrinsics (metres), ``x_cam = R @ X + t``.
        width, height: image size in pixels, shared by the batch.

    Batched or not: the leading dims ``...`` of ``K`` and ``world_to_cam`` broadcast against each other
    (one crop camera per frame with one extrinsic is ``K`` (N, 3, 3), ``world_to_cam`` (4, 4)). Arrays
    are stored as tensors (no copy where ``torch.as_tensor`` makes none): NumPy input keeps its float dtype, so
    ``cam.K.numpy()`` gives back what went in. Methods return tensors.
    """

    K: Tensor
    world_to_cam: Tensor
    width: int
    height: int

    def __post_init__(self):
        object.__setattr__(self, "K", _as_float_tensor(self.K, "K", (3, 3)))
        object.__setattr__(self, "world_to_cam", _as_float_tensor(self.world_to_cam, "world_to_cam", (4, 4)))
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise BadInputError(f"camera image size must be positive, got {self.width} x {self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def batch_shape(self) -> torch.Size:
        """The broadcast leading dims of ``K`` and ``world_to_cam`` (``()`` for one camera)."""
        return torch.broadcast_shapes(self.K.shape[:-2], self.world_to_cam.shape[:-2])

    def __getitem__(self, idx) -> "Camera":
        """The camera(s) ``idx`` of a batched camera."""
        b = self.batch_shape
        return Camera(self.K.expand(*b, 3, 3)[idx], self.world_to_cam.expand(*b, 4, 4)[idx], self.width, self.height)

    def to(self, *args, **kwargs) -> "Camera":
        """The camera with ``K`` and ``world_to_cam`` moved/cast as ``Tensor.to(*args, **kwargs)``."""
        return Camera(self.K.to(*args, **kwargs), self.world_to_cam.to(*args, **kwargs), self.width, self.height)

    @property
    def raster_K(self) -> Tensor:
        """(..., 3, 3) intrinsics with pixel centres at +0.5, for ``render_mesh`` / the Gaussian rasterizer / Open3D."""
        return raster_intrinsics(self.K)

    @property
    def centre(self) -> Tensor:
        """(..., 3) camera centre in world coordinates (metres): ``-R^T t``."""
        R, t = self.world_to_cam[..., :3, :3], self.world_to_cam[..., :3, 3]
        return -(R.swapaxes(-1, -2) @ t[..., None])[..., 0]

    def project(self, points: Array, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
        """(..., P, 3) world points -> (..., P, 2) pixels (centres at integers) and (..., P) depth (metres)."""
        pts = torch.as_tensor(points, dtype=self.K.dtype, device=self.K.device)
        return project(pts, self.K, self.world_to_cam.to(pts), eps)

    def to_clip(self, points: Tensor, near: float = 0.01, far: float = 100.0) -> Tensor:
        """(B, V, 3) or (V, 3) world points -> (B, V, 4) clip-space positions for the mesh rasterizer."""
        return world_to_clip(points, self.raster_K, self.world_to_cam, self.width, self.height, near, far)

    def rays_at(self, pixels: Array) -> tuple[Tensor, Tensor]:
        """Rays through pixel positions ``pixels`` (..., P, 2) (centres at integers).

        Returns:
            origins (..., P, 3) (the camera centre) and unit directions (..., P, 3), world frame.
        """
        px = torch.as_tensor(pixels, dtype=self.K.dtype, device=self.K.device)
        K = self.K[..., None, :, :]
        # Invert u = fx x + s y + cx, v = fy y + cy at z = 1 (the ray in camera coordinates).
        y = (px[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
        x = (px[..., 0] - K[..., 0, 2] - K[..., 0, 1] * y) / K[..., 0, 0]
        d_cam = torch.stack([x, y, torch.ones_like(x)], -1)
        R = self.world_to_cam[..., None, :3, :3].to(d_cam)
        d = (R.swapaxes(-1, -2) @ d_cam[..., None])[..., 0]
        d = d / d.norm(dim=-1, keepdim=True)
        return self.centre.to(d)[..., None, :].expand(d.shape), d

    def rays(self) -> tuple[Tensor, Tensor]:
        """Per-pixel rays for ray-based renderers: origins and unit directions (..., H, W, 3), world frame;
        row ``i``, column ``j`` goes through that pixel's centre ``(u, v) = (j, i)``."""
        v, u = torch.meshgrid(torch.arange(self.height, dtype=self.K.dtype), torch.arange(self.width, dtype=self.K.dtype),
                              indexing="ij")
        o, d = self.rays_at(torch.stack([u, v], -1).reshape(-1, 2).to(self.K.device))
        return o.unflatten(-2, (self.height, self.width)), d.unflatten(-2, (self.height, self.width))

    def cam_to_world_gl(self) -> Tensor:
        """(..., 4, 4) camera-to-world in OpenGL axes (x right, y up, z backward), as NeRF tools store it."""
        return cv_to_gl_c2w(self.world_to_cam)

    def crop(self, boxes: np.ndarray, resolution: int) -> "Camera":
        """The (N,) cameras of square crops ``boxes`` (N, 3) = (x0, y0, size) (pixels of this one-K camera),
        each resized to ``resolution`` x ``resolution`` (as :func:`avatar3d.capture.crop.apply_crop` cuts them)."""
        if self.K.ndim != 2:
            raise BadInputError(f"crop needs a camera with one K (3, 3), got {tuple(self.K.shape)}")
        K = crop_intrinsics(self.K.detach().cpu().double().numpy(), np.asarray(boxes), resolution)
        return Camera(torch.as_tensor(K).to(self.K), self.world_to_cam, resolution, resolution)

    def scale(self, width: int, height: Optional[int] = None) -> "Camera":
        """The same view at a new resolution ``width`` x ``height`` (default: the aspect ratio kept)."""
        height = round(self.height * width / self.width) if height is None else int(height)
        K = scale_intrinsics(self.K, width / self.width, height / self.height)
        return Camera(K, self.world_to_cam, width, height)

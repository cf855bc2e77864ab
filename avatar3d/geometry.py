"""Mesh and rotation maths used everywhere: face and vertex normals and rotation conversions, once.

Every function has a torch version (differentiable where the trackers optimise through it) and a
NumPy version with the suffix ``_np``; ``tests/test_geometry.py`` checks each pair against each
other. Conventions:

* rotations act on column vectors (``p' = R @ p``); axis-angle vectors are the rotation axis times
  the angle in radians;
* quaternions are ``(w, x, y, z)`` with a non-negative ``w`` where this module chooses the sign
  (file formats that store ``(x, y, z, w)``, such as glTF, reorder at the file boundary);
* triangles wind counter-clockwise seen from outside, so normals point outwards.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = [
    "face_normals", "face_normals_np", "vertex_normals", "vertex_normals_np", "incidence", "incidence_np",
    "axis_angle_to_matrix", "axis_angle_to_matrix_np", "matrix_to_axis_angle", "matrix_to_axis_angle_np",
    "quaternion_to_matrix", "quaternion_to_matrix_np", "matrix_to_quaternion", "matrix_to_quaternion_np",
    "axis_angle_to_quaternion", "axis_angle_to_quaternion_np", "quaternion_to_axis_angle", "quaternion_to_axis_angle_np",
]


# ----------------------------------------------------------------------------- face normals
def face_normals(vertices: Tensor, faces: Tensor, normalize: bool = True) -> Tensor:
    """Triangle normals. vertices (..., V, 3), faces (F, 3) -> (..., F, 3); differentiable.

    Unit length when ``normalize`` (a degenerate triangle gets ~zero), else the raw cross
    product, whose length is twice the triangle's area (area weighting, or just the side).
    """
    tri = vertices[..., faces.long(), :]  # (..., F, 3 corners, 3)
    n = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12) if normalize else n


def face_normals_np(verts: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Triangle normals of (V, 3) vertices and (F, 3) triangles -> (F, 3), in ``verts``' dtype.

    Unit length when ``normalize`` (a degenerate triangle gets ~zero), else the raw cross
    product, whose length is twice the triangle's area (area weighting, or just the side).
    """
    tri = np.asarray(verts)[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12) if normalize else n


# ----------------------------------------------------------------------------- vertex normals
def incidence(faces: Tensor, num_vertices: int) -> Tensor:
    """(V, F) sparse CSR float32 vertex-triangle incidence: ``incidence @ face_normals`` sums per vertex."""
    F = len(faces)
    rows, cols = faces.long().T.reshape(-1), torch.arange(F).repeat(3)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": only matmul is used, which is stable
        warnings.simplefilter("ignore")
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(3 * F), (num_vertices, F)).coalesce().to_sparse_csr()


def vertex_normals(vertices: Tensor, faces: Tensor, incidence: Optional[Tensor] = None) -> Tensor:
    """Area-weighted unit vertex normals. vertices (B,V,3), faces (F,3) -> (B,V,3); differentiable.

    Vertices no triangle uses get a zero normal. ``incidence`` (V,F) from :func:`incidence` sums the
    face normals with one sparse matmul instead (about 3x faster for repeated calls on one mesh,
    not differentiable); both sum the same terms, in a different order.
    """
    f = faces.long()
    B, V = vertices.shape[:2]
    # Vertex-major (V, B*3) layout: every gather and index_add moves one contiguous row of B*3
    # values per index, and index_add_ accumulates in place (~3x faster at B=8 than index_add on
    # (B, V, 3) with a new tensor per corner). Same sums in the same order: the same bits.
    vt = vertices.transpose(0, 1).reshape(V, B * 3)
    v0, v1, v2 = (vt[f[:, k]].view(-1, B, 3) for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0)  # (F,B,3), length = 2 * area: area weighting for free
    if incidence is not None:
        n = (incidence @ fn.reshape(len(f), B * 3)).view(V, B, 3).transpose(0, 1)
        return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)
    fn = fn.reshape(-1, B * 3)
    n = vertices.new_zeros(V, B * 3)
    for k in range(3):
        n.index_add_(0, f[:, k], fn)
    return torch.nn.functional.normalize(n.view(V, B, 3).transpose(0, 1).contiguous(), dim=-1, eps=1e-12)


def incidence_np(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """(V, F) sparse float32 vertex-triangle incidence: ``incidence_np @ face_normals`` sums per vertex."""
    F = len(faces)
    rows = np.asarray(faces).T.reshape(-1)
    cols = np.tile(np.arange(F), 3)
    return sp.csr_matrix((np.ones(3 * F, np.float32), (rows, cols)), shape=(num_vertices, F))


def vertex_normals_np(verts: np.ndarray, faces: np.ndarray, incidence: Optional[sp.csr_matrix] = None,
                      eps: float = 1e-12, unused: Optional[tuple[float, float, float]] = None) -> np.ndarray:
    """(N, 3) unit area-weighted normals of (V, 3) vertices and (F, 3) triangles, in ``verts``' dtype.

    ``incidence`` (N, F) picks which vertices to return (default :func:`incidence_np`: the V
    vertices); the viewer passes the incidence rows of its UV-split render vertices, so seams get
    identical normals. A summed normal not longer than ``eps`` (a vertex no triangle uses) comes
    out ~zero, or as the unit vector ``unused`` when given (file formats want unit normals).
    """
    verts = np.asarray(verts)
    fn = face_normals_np(verts, faces, normalize=False)  # length = 2 * area: area weighting
    A = incidence if incidence is not None else incidence_np(faces, len(verts))
    n = A @ fn  # one sparse product: 3x faster than np.add.at / np.bincount per component
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    out = n / np.maximum(norm, eps)
    if unused is not None:
        out = np.where(norm > eps, out, np.asarray(unused, out.dtype))
    return out.astype(verts.dtype, copy=False)


# ----------------------------------------------------------------------------- axis-angle <-> matrix
def axis_angle_to_matrix(rvec: Tensor, eps: float = 1e-8) -> Tensor:
    """(..., 3) axis-angle in radians -> (..., 3, 3) rotation matrices (Rodrigues), smooth at zero.

    The angle is ``sqrt(|r|^2 + eps)``, which keeps the gradient finite at the rest pose (the
    models' and trackers' convention; it moves an angle theta by about eps / (2 theta)).
    """
    angle = torch.sqrt((rvec * rvec).sum(-1, keepdim=True) + eps)  # (..., 1)
    axis = rvec / angle
    c, s = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device)[None]
    R = eye + s.view(-1, 1, 1) * K + (1 - c.view(-1, 1, 1)) * (K @ K)
    return R.view(rvec.shape[:-1] + (3, 3))


def axis_angle_to_matrix_np(rvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle in radians -> (..., 3, 3) rotation matrices (Rodrigues, exact; float64)."""
    r = np.asarray(rvec, np.float64)
    angle = np.linalg.norm(r, axis=-1)[..., None, None]
    x, y, z = np.moveaxis(r, -1, 0)
    zero = np.zeros_like(x)
    K = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(r.shape[:-1] + (3, 3))  # [r]_x, not unit
    # sin(a)/a and (1-cos a)/a^2 with their series near 0 (no 0/0 at the rest pose).
    small = angle < 1e-6
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0 - angle**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - angle**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * K + b * (K @ K)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle in radians, angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def matrix_to_axis_angle_np(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle in radians, angle in [0, pi]."""
    return quaternion_to_axis_angle_np(matrix_to_quaternion_np(R))


# ----------------------------------------------------------------------------- quaternion <-> matrix
def quaternion_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any non-zero norm -> (..., 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def quaternion_to_matrix_np(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), any non-zero norm -> (..., 3, 3) float64 rotation matrices."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def _quaternion_candidates(R, stack):
    """The four (..., 4) quaternion candidates of Shepperd's method and their (..., 4) weights.

    Candidate k divides by the k-th of 4*(w^2, x^2, y^2, z^2); the largest divisor is the stable one.
    """
    m = [[R[..., i, j] for j in range(3)] for i in range(3)]
    t = stack([1 + m[0][0] + m[1][1] + m[2][2], 1 + m[0][0] - m[1][1] - m[2][2],
               1 - m[0][0] + m[1][1] - m[2][2], 1 - m[0][0] - m[1][1] + m[2][2]], -1)  # 4 w^2, 4 x^2, ...
    d21, d02, d10 = m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]
    s21, s02, s10 = m[2][1] + m[1][2], m[0][2] + m[2][0], m[1][0] + m[0][1]
    cands = [stack([t[..., 0], d21, d02, d10], -1), stack([d21, t[..., 1], s10, s02], -1),
             stack([d02, s10, t[..., 2], s21], -1), stack([d10, s02, s21, t[..., 3]], -1)]
    return cands, t


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0 (Shepperd)."""
    cands, t = _quaternion_candidates(R, torch.stack)
    best = t.argmax(-1)
    q = torch.stack(cands, -2)  # (..., 4 candidates, 4)
    q = torch.gather(q, -2, best[..., None, None].expand(best.shape + (1, 4)))[..., 0, :]
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_quaternion_np(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0 (Shepperd)."""
    cands, t = _quaternion_candidates(np.asarray(R, np.float64), np.stack)
    best = t.argmax(-1)
    q = np.take_along_axis(np.stack(cands, -2), best[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


# ----------------------------------------------------------------------------- axis-angle <-> quaternion
def axis_angle_to_quaternion(rvec: Tensor) -> Tensor:
    """(..., 3) axis-angle in radians -> (..., 4) unit quaternions (w, x, y, z)."""
    angle = torch.linalg.vector_norm(rvec, dim=-1, keepdim=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 as a -> 0; the series avoids 0/0 (and a NaN gradient) at the rest pose.
    safe = torch.where(angle > 1e-8, angle, torch.ones_like(angle))
    k = torch.where(angle > 1e-8, torch.sin(0.5 * safe) / safe, 0.5 - angle**2 / 48.0)
    return torch.cat([torch.cos(half), rvec * k], -1)


def axis_angle_to_quaternion_np(rvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle in radians -> (..., 4) float64 unit quaternions (w, x, y, z)."""
    r = np.asarray(rvec, np.float64)
    angle = np.linalg.norm(r, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 as a -> 0; the series avoids 0/0 for the rest pose.
    k = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-12), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), r * k], -1)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any non-zero norm -> (..., 3) axis-angle, angle in [0, pi]."""
    q = torch.nn.functional.normalize(q, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)  # q and -q are one rotation; w >= 0 gives the angle <= pi
    s = torch.linalg.vector_norm(q[..., 1:], dim=-1, keepdim=True)  # sin(angle / 2)
    angle = 2 * torch.atan2(s, q[..., :1])
    safe = torch.where(s > 1e-8, s, torch.ones_like(s))
    k = torch.where(s > 1e-8, angle / safe, 2.0 / q[..., :1].clamp(min=1e-12))  # angle / sin(angle/2) -> 2 / w
    return q[..., 1:] * k


def quaternion_to_axis_angle_np(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), any non-zero norm -> (..., 3) float64 axis-angle, angle in [0, pi]."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., :1])
    k = np.where(s > 1e-8, angle / np.maximum(s, 1e-300), 2.0 / np.maximum(q[..., :1], 1e-12))
    return q[..., 1:] * k

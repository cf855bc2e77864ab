"""Geometry shared by the exporters: UV-seam splitting, tangents, 4-influence skin weights, glTF-order quaternions.

Game engines store one UV per vertex, while our models index UVs per face corner (a vertex on a UV
seam has several). :func:`split_seams` duplicates exactly those vertices; ``src`` maps every
exported vertex back to the model vertex so positions, blendshapes and skin weights are gathered
from the model and seams stay watertight in 3D (and share normals, so no shading crease appears).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import axis_angle_to_quaternion_np, quaternion_to_matrix_np


@dataclass
class SplitMesh:
    """A mesh with one UV per vertex. V' exported vertices, F triangles."""

    src: np.ndarray  #: (V',) int, model vertex of each exported vertex
    uvs: np.ndarray  #: (V', 2) float32, origin bottom-left (OBJ convention)
    faces: np.ndarray  #: (F, 3) int, into the exported vertices


def split_seams(faces: np.ndarray, uv_faces: np.ndarray, uvs: np.ndarray) -> SplitMesh:
    """Give every distinct (vertex, uv) corner pair its own vertex.

    Args:
        faces: (F, 3) model vertex indices; uv_faces: (F, 3) indices into ``uvs`` (T, 2).
    """
    faces = np.asarray(faces, np.int64)
    uv_faces = np.asarray(uv_faces, np.int64)
    T = max(int(uv_faces.max()) + 1, 1) if uv_faces.size else 1
    key = faces.reshape(-1) * T + uv_faces.reshape(-1)
    uniq, inverse = np.unique(key, return_inverse=True)
    return SplitMesh(src=uniq // T, uvs=np.asarray(uvs, np.float32)[uniq % T], faces=inverse.reshape(-1, 3))


def vertex_tangents(verts: np.ndarray, normals: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 4) glTF TANGENT (unit xyz along +u, w = bitangent sign) from per-vertex UVs.

    Per-triangle dP/du and dP/dv (``uvs`` with a bottom-left origin, so the bitangent points "up"
    the image, the +Y of OpenGL/glTF normal maps) are area-weighted onto vertices, then made
    orthogonal to the normal (Gram-Schmidt). Degenerate UV triangles contribute nothing.
    """
    p = np.asarray(verts, np.float64)
    t = np.asarray(uvs, np.float64)
    e1, e2 = p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]]
    d1, d2 = t[faces[:, 1]] - t[faces[:, 0]], t[faces[:, 2]] - t[faces[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-14
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None] * np.abs(det)[:, None]  # sign-correct, area-weighted
    sdir = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    tdir = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    tan = np.zeros_like(p)
    bit = np.zeros_like(p)
    for k in range(3):
        np.add.at(tan, faces[:, k], sdir)
        np.add.at(bit, faces[:, k], tdir)
    n = np.asarray(normals, np.float64)
    tan = tan - n * (n * tan).sum(1, keepdims=True)
    length = np.linalg.norm(tan, axis=1, keepdims=True)
    # Vertices without a usable UV gradient get any unit vector orthogonal to the normal.
    fallback = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    fallback /= np.linalg.norm(fallback, axis=1, keepdims=True)
    tan = np.where(length > 1e-12, tan / np.maximum(length, 1e-12), fallback)
    w = np.where((np.cross(n, tan) * bit).sum(1) < 0, -1.0, 1.0)
    return np.concatenate([tan, w[:, None]], 1)


def top4_weights(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Keep the 4 strongest joint influences per vertex (the glTF JOINTS_0/WEIGHTS_0 limit), renormalised.

    Args:
        weights: (V, J) skinning weights, rows summing to 1.
    Returns:
        joints (V, 4) uint8/uint16, weights (V, 4) float32 summing to 1, and the largest weight dropped.
        Unused slots get joint 0 with weight 0.
    """
    w = np.clip(np.asarray(weights, np.float64), 0.0, None)
    V, J = w.shape
    if J < 4:
        w = np.concatenate([w, np.zeros((V, 4 - J))], 1)
    order = np.argsort(-w, axis=1, kind="stable")[:, :4]
    top = np.take_along_axis(w, order, 1)
    dropped = float(np.sort(w, 1)[:, :-4].max()) if w.shape[1] > 4 else 0.0
    s = top.sum(1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("skinning weights: some vertex has no positive weight")
    top = top / s
    joints = np.where(top > 0, order, 0)
    top32 = top.astype(np.float32)
    # Make float32 rows sum to 1 as exactly as float32 allows: put the rounding residue on the largest weight.
    top32[:, 0] += (1.0 - top32.astype(np.float64).sum(1)).astype(np.float32)
    jdtype = np.uint8 if J <= 256 else np.uint16
    return joints.astype(jdtype), top32, dropped


def axis_angle_to_quat(rvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle (radians) -> (..., 4) unit quaternions in glTF order (x, y, z, w)."""
    return np.roll(axis_angle_to_quaternion_np(rvec), -1, axis=-1)


def continuous_quats(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 ((N, ..., 4) quaternions) so neighbours lie in one hemisphere (slerp takes the short way)."""
    q = np.array(q, np.float64, copy=True)
    for i in range(1, len(q)):
        dot = (q[i] * q[i - 1]).sum(-1, keepdims=True)
        q[i] = np.where(dot < 0, -q[i], q[i])
    return q


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions in glTF order (x, y, z, w) -> (..., 3, 3) rotation matrices (used by tests and the OBJ path)."""
    return quaternion_to_matrix_np(np.roll(np.asarray(q, np.float64), 1, axis=-1))

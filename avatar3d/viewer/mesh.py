"""Turning a :class:`HeadModel` + :class:`HeadParams` into Open3D geometry, fast enough for sliders.

The render mesh splits vertices along UV seams once (a model vertex with k distinct UVs becomes k
render vertices); each update then only gathers posed positions/normals into that fixed layout, so
the material and texture are never rebuilt.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..geometry import incidence_np, vertex_normals_np
from .materials import SurfaceMaps
from .params import HeadParams

__all__ = ["HeadMesh"]


class HeadMesh:
    """Posing + render-layout of one head model (CPU, no grad)."""

    def __init__(self, model: torch.nn.Module, maps: Optional[SurfaceMaps] = None):
        """``maps``: the appearance stage's PBR maps for this model (their albedo replaces the model's texture)."""
        self.model = model.eval()
        faces = model.faces.cpu().numpy()
        self.faces = faces
        uvs = model.uvs.cpu().numpy()
        uv_faces = model.uv_faces.cpu().numpy()
        if len(uvs) and uv_faces.shape == faces.shape:
            # A render vertex per distinct (vertex, uv) pair used by a triangle corner.
            pairs = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], 1)
            uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
            self.render_to_model = uniq[:, 0]
            # Model UVs have the origin bottom-left (OBJ), which is also what Open3D's materials
            # expect for albedo images (checked by tests/test_viewer_headless.py), so no flip.
            self.render_uvs: Optional[np.ndarray] = uvs[uniq[:, 1]].astype(np.float32)
            self.render_faces = inv.reshape(-1, 3).astype(np.int64)
        else:
            self.render_to_model = np.arange(model.num_vertices)
            self.render_uvs = None
            self.render_faces = faces.astype(np.int64)
        albedo = model.extras.get("albedo") if isinstance(getattr(model, "extras", None), dict) else None
        self.maps = maps if self.render_uvs is not None else None  #: :class:`SurfaceMaps` or None (needs UVs)
        if self.maps is not None:
            albedo = self.maps.albedo
        self.albedo: Optional[np.ndarray] = None
        if albedo is not None and self.render_uvs is not None:
            a = np.asarray(albedo)
            if a.ndim == 3 and a.shape[2] in (3, 4):
                if a.dtype != np.uint8:
                    a = (np.clip(a, 0, 1) * 255).astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)
                self.albedo = np.ascontiguousarray(a[..., :3])
        self.edges = self._edges(faces)
        self._render_incidence = incidence_np(faces, model.num_vertices)[self.render_to_model]
        self._const: Optional[tuple] = None  # open3d tensors of triangles and UVs, made on first use

    @staticmethod
    def _edges(faces: np.ndarray) -> np.ndarray:
        e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        return np.unique(np.sort(e, 1), axis=0)

    @torch.no_grad()
    def pose(self, p: HeadParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posed model vertices (V, 3), landmarks (478, 3) (or (0, 3)) and joints (J, 3), metres."""
        m = self.model
        out = m(shape=torch.from_numpy(p.shape)[None], expression=torch.from_numpy(p.expression)[None],
                pose=torch.from_numpy(p.pose)[None], transl=torch.from_numpy(p.transl)[None])
        lmk = out.landmarks[0].numpy() if m.has_landmarks else np.zeros((0, 3), np.float32)
        return out.vertices[0].numpy(), lmk, out.joints[0].numpy()

    def render_arrays(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and normals (R, 3) float32 in render-vertex layout for (V, 3) model vertices."""
        v = np.asarray(verts, np.float32)
        n = vertex_normals_np(v, self.faces, self._render_incidence)
        return np.ascontiguousarray(v[self.render_to_model]), np.ascontiguousarray(n, np.float32)

    def triangle_mesh(self, verts: np.ndarray, arrays: Optional[tuple[np.ndarray, np.ndarray]] = None):
        """An ``open3d.t.geometry.TriangleMesh`` (positions, normals, uvs) for (V, 3) model vertices
        (``arrays``: their ``render_arrays`` when the caller already has them)."""
        import open3d as o3d

        pos, nrm = arrays if arrays is not None else self.render_arrays(verts)
        if self._const is None:  # UVs and triangles never change: convert them once
            uv = o3d.core.Tensor(self.render_uvs) if self.render_uvs is not None else None
            self._const = (o3d.core.Tensor(self.render_faces), uv)
        tm = o3d.t.geometry.TriangleMesh()
        tm.vertex.positions = o3d.core.Tensor(pos)
        tm.vertex.normals = o3d.core.Tensor(nrm)
        if self._const[1] is not None:
            tm.vertex.texture_uvs = self._const[1]
        tm.triangle.indices = self._const[0]
        return tm

    def line_set(self, verts: np.ndarray):
        """Edges of the mesh as an ``open3d.t.geometry.LineSet``."""
        import open3d as o3d

        ls = o3d.t.geometry.LineSet()
        ls.point.positions = o3d.core.Tensor(np.ascontiguousarray(verts, np.float32))
        ls.line.indices = o3d.core.Tensor(self.edges.astype(np.int64))
        return ls

"""Where a Gaussian head's Gaussians start: densely on the head model's surface, from its UV texels.

One Gaussian per texel of an R x R UV map that falls inside a UV triangle (:class:`~avatar3d.appearance.uvmap.UVTexels`),
so density follows the UV layout (the face gets the most), plus one at the centroid of every triangle no
texel landed in (the small triangles of the eyes, lips, teeth and mouth interior, which UV layouts
squeeze), so every part of the model is covered, whatever its UV area. Each starts flat in its
triangle's plane with an in-plane standard deviation of half its spacing (the texel's footprint on the
surface, or the triangle's own size), so neighbours overlap into a closed surface.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..appearance.uvmap import UVTexels
from ..models.base import HeadModel

__all__ = ["SurfaceSamples", "surface_samples", "triangle_ids", "sample_texture", "neutral_vertices"]


class SurfaceSamples(NamedTuple):
    """N points on the model's surface."""

    parent: Tensor  #: (N,) int64 triangle
    bary: Tensor  #: (N, 3) float32 barycentrics in it
    uv: Tensor  #: (N, 2) float32 UV coordinates (origin bottom-left)
    spacing: Tensor  #: (N,) float32 distance to the neighbouring samples on the neutral surface, metres


def triangle_ids(model: HeadModel, faces: Tensor) -> Tensor:
    """(M,) index into ``model.faces`` of each row of ``faces`` (M, 3) (rows of ``model.faces``)."""
    F, V = model.faces.long(), model.num_vertices
    key = (F[:, 0] * V + F[:, 1]) * V + F[:, 2]
    want = (faces[:, 0].long() * V + faces[:, 1].long()) * V + faces[:, 2].long()
    order = torch.argsort(key)
    pos = torch.searchsorted(key[order], want).clamp(max=len(F) - 1)
    ids = order[pos]
    if not bool((F[ids] == faces.long()).all()):
        raise ValueError("faces holds rows that are not triangles of the model")
    return ids


def _areas(points: Tensor, faces: Tensor) -> Tensor:
    """(F,) areas of triangles ``faces`` (F, 3) of ``points`` (P, 2 or 3)."""
    p = points.double()
    if p.shape[1] == 2:
        p = torch.cat([p, torch.zeros_like(p[:, :1])], 1)
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    return 0.5 * torch.linalg.cross(b - a, c - a, dim=-1).norm(dim=-1)


def surface_samples(model: HeadModel, vertices: Tensor, uv_resolution: int, fill_triangles: bool = True) -> SurfaceSamples:
    """The initial Gaussians' places (see the module docstring).

    Args:
        model: the head model (faces and UV layout); vertices: (V, 3) its neutral surface (metres),
        e.g. the tracked identity at zero expression and pose.
        uv_resolution: R; about 0.73 R^2 texels fall inside the built-in head's UV charts (R = 128: 11.9k).
        fill_triangles: add a centroid sample on every triangle without a texel.
    """
    tx = UVTexels(model, uv_resolution)
    tri = triangle_ids(model, tx.faces)
    faces, uv_faces = model.faces.long(), model.uv_faces.long()
    area3d = _areas(vertices, faces)  # (F,) m^2
    area_uv = _areas(model.uvs, uv_faces).clamp_min(1e-20)  # (F,) in units of the unit UV square
    # a texel covers 1/R^2 of the UV square: its footprint on the surface scales with the triangle's 3D/UV area ratio
    spacing = torch.sqrt(area3d[tri] / (area_uv[tri] * uv_resolution**2))
    bary = tx.bary
    uv = (model.uvs.float()[uv_faces[tri]] * bary[..., None]).sum(1)
    parent = [tri]
    bary_l, uv_l, sp_l = [bary], [uv], [spacing]
    if fill_triangles:
        empty = torch.ones(len(faces), dtype=torch.bool)
        empty[tri] = False
        rest = torch.nonzero(empty)[:, 0]
        third = torch.full((len(rest), 3), 1.0 / 3.0)
        parent.append(rest)
        bary_l.append(third)
        uv_l.append(model.uvs.float()[uv_faces[rest]].mean(1))
        sp_l.append(torch.sqrt(area3d[rest]))
    return SurfaceSamples(torch.cat(parent), torch.cat(bary_l).float(), torch.cat(uv_l).float(),
                          torch.cat(sp_l).float().clamp_min(1e-5))


def sample_texture(texture: np.ndarray, uv: Tensor) -> Tensor:
    """(N, C) bilinear lookup of an (R, R, C) texture (row 0 = top, UV v = 1) at (N, 2) UVs."""
    import cv2

    img = np.asarray(texture, np.float32)
    H, W = img.shape[:2]
    u = uv.double().numpy()
    mx = (u[:, 0] * W - 0.5).astype(np.float32)
    my = ((1 - u[:, 1]) * H - 0.5).astype(np.float32)
    out = cv2.remap(img, mx[:, None], my[:, None], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return torch.as_tensor(out.reshape(len(u), -1))


def neutral_vertices(model: HeadModel, shape: Optional[Tensor]) -> Tensor:
    """(V, 3) the model with identity ``shape`` (S,) (None: the template) at zero expression and pose."""
    with torch.no_grad():
        return model(shape=None if shape is None else shape[None]).vertices[0]

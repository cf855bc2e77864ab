"""The head model's UV layout per texel, and filling of texels no frame saw.

:class:`UVTexels` finds, for every texel of an (R, R) map, the model triangle it lies in and its
barycentrics, so posed surface points and normals per texel are a gather from posed vertices.
:class:`UVFiller` fills unseen texels with a left-right-symmetric, smooth prior:

1. **mirror**: where the template is left-right symmetric (a vertex has a counterpart at (-x, y, z)
   within 1 mm) the texel's mirror image on the other side of the face is found in UV (the
   barycentric combination of the counterparts' UVs); an unseen texel whose mirror was seen takes
   its colour. Faces are not exactly symmetric, but copying the other cheek is far closer than a
   blur across the ear.
2. **smooth inpainting**: what is still empty (both sides unseen, the back of the head, models
   without symmetry) is filled by ever wider normalised Gaussian blurs of the known texels
   (push-pull), finally the mean colour.

Shapes: R x R texels, M texels inside a UV triangle, V vertices, F triangles. UVs follow the OBJ
convention (origin bottom-left); texel row 0 is the top of the map (v = 1).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..models.base import HeadModel
from ..render.mesh import rasterize

__all__ = ["UVTexels", "UVFiller", "smooth_fill"]


class UVTexels:
    """Texels of an R x R map inside the model's UV triangles, with their triangle and barycentrics.

    Attributes:
        resolution: R.
        index: (M,) flat texel index (row-major, row 0 at the top).
        faces: (M, 3) model vertex ids of each texel's triangle.
        bary: (M, 3) float32 barycentrics of the texel centre in that triangle.
        uv_faces: (M, 3) UV ids of that triangle.
    """

    def __init__(self, model: HeadModel, resolution: int):
        self.resolution = R = int(resolution)
        uv = model.uvs.float()
        # The UV layout as a "screen": x = 2u - 1, y = 1 - 2v puts v = 1 on row 0 (rasterize's y grows down).
        pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0]), torch.ones_like(uv[:, 0])], -1)
        rast, _ = rasterize(pos[None], model.uv_faces.to(torch.int32).contiguous(), (R, R))
        tri = rast[0, ..., 3].long().reshape(-1) - 1  # (R*R,) triangle id, -1 outside
        self.index = torch.nonzero(tri >= 0)[:, 0]
        t = tri[self.index]
        b = rast[0, ..., :2].reshape(-1, 2)[self.index]
        self.bary = torch.cat([b, 1 - b.sum(1, keepdim=True)], 1).float()
        self.faces = model.faces[t].long()
        self.uv_faces = model.uv_faces[t].long()
        self.uvs = model.uvs.float()

    @property
    def count(self) -> int:
        """M."""
        return int(self.index.numel())

    def gather(self, per_vertex: Tensor) -> Tensor:
        """(B, M, C) texel values interpolated from (B, V, C) per-vertex values."""
        return torch.einsum("bmkc,mk->bmc", per_vertex[:, self.faces], self.bary)

    def to_image(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """(R, R, C) map from (M, C) texel values (``fill`` outside the charts)."""
        R = self.resolution
        out = values.new_full((R * R, values.shape[1]), fill)
        out[self.index] = values
        return out.view(R, R, -1)


def _mirror_vertices(template: np.ndarray, tol: float) -> np.ndarray:
    """(V,) id of each vertex's left-right counterpart (nearest vertex to (-x, y, z)), -1 beyond ``tol`` metres."""
    from scipy.spatial import cKDTree

    d, j = cKDTree(template).query(template * np.array([-1.0, 1.0, 1.0]))
    return np.where(d <= tol, j, -1)


class UVFiller:
    """Fills texels of an R x R map that no frame saw (see the module docstring).

    Args:
        texels: the map's :class:`UVTexels`; model: its head model (the template decides symmetry);
        tol: metres within which a mirrored vertex must land on another vertex.
    """

    def __init__(self, texels: UVTexels, model: HeadModel, tol: float = 1e-3):
        self.texels = texels
        mirror = torch.as_tensor(_mirror_vertices(model.v_template.double().numpy(), tol))
        # One UV per vertex for the counterpart (a seam vertex has several: any one lands on the right chart
        # side for interior texels, which is where mirroring is used).
        vert_uv = torch.zeros(model.num_vertices, dtype=torch.long)
        vert_uv[model.faces.reshape(-1).long()] = model.uv_faces.reshape(-1).long()
        m = mirror[texels.faces]  # (M,3)
        ok = (m >= 0).all(1)
        uvm = (texels.uvs[vert_uv[m.clamp(min=0)]] * texels.bary[..., None]).sum(1)  # (M,2) mirrored point's UV
        R = texels.resolution
        col = (uvm[:, 0] * R).long().clamp(0, R - 1)
        row = ((1 - uvm[:, 1]) * R).long().clamp(0, R - 1)
        self.mirror_index = torch.where(ok, row * R + col, torch.full_like(col, -1))  #: (M,) flat texel of the mirror, -1 none

    @property
    def symmetric_fraction(self) -> float:
        """Fraction of texels that have a mirror counterpart."""
        return float((self.mirror_index >= 0).float().mean())

    def __call__(self, values: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """Fill (M, C) texel ``values`` where (M,) ``weight`` is 0.

        Returns:
            (R, R, C) filled map and (M,) bool texels filled by mirroring.
        """
        R, tx = self.texels.resolution, self.texels
        seen_img = torch.zeros(R * R, dtype=torch.bool)
        seen_img[tx.index] = weight > 0
        val_img = tx.to_image(values).reshape(R * R, -1)
        mi = self.mirror_index
        use = (weight <= 0) & (mi >= 0) & seen_img[mi.clamp(min=0)]
        values = values.clone()
        values[use] = val_img[mi[use]]
        known = (weight > 0) | use
        img = tx.to_image(values).numpy().astype(np.float64)
        known_img = np.zeros(R * R, bool)
        known_img[tx.index.numpy()] = known.numpy()
        return torch.as_tensor(smooth_fill(img, known_img.reshape(R, R)), dtype=values.dtype), use


def smooth_fill(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(H, W, C) ``img`` with texels where ``known`` (H, W) is False filled by ever wider normalised blurs (push-pull)."""
    import cv2

    out, filled = img.copy(), known.copy()
    if not filled.any():
        return np.full_like(img, 0.5)
    mean = img[filled].mean(0)
    for sigma in (1.5, 4.0, 12.0, 40.0):
        if filled.all():
            break
        k = int(6 * sigma) | 1
        num = cv2.GaussianBlur(np.ascontiguousarray(out * filled[..., None]), (k, k), sigma)
        den = cv2.GaussianBlur(filled.astype(np.float64), (k, k), sigma)
        num = num.reshape(out.shape)
        grow = (~filled) & (den > 1e-3)
        out[grow] = num[grow] / den[grow][:, None]
        filled = filled | grow
    out[~filled] = mean
    return out

"""From per-texel surface slopes to a displacement map and a tangent-space normal map, in the UV layout.

:class:`TangentGeometry` is the template mesh seen from the UV layout per texel (the same construction as the
ground truth's :func:`avatar3d.synthetic.pbr_maps.uv_geometry`, which runtime code may not import): the UV
Jacobian ``J = [dp/du dp/dv]`` (metres per UV unit), the tangent frame (tangent along +u projected on the
interpolated vertex normal, bitangent = normal x tangent) and ``grad_t``/``grad_b``: the slope of a height
field along the tangent/bitangent (metres per metre) is ``grad_t . (dh/du, dh/dv)``.

:class:`HeightIntegrator` turns slopes ``(dh/dt, dh/db)`` (the detail pass's estimate, with a confidence per
texel) into a height map by a screened Poisson least-squares problem on the texel grid, solved by
preconditioned conjugate gradients in torch::

    min_h  sum_edges w_e (h_j - h_i - q_e)^2 + lambda sum_i h_i^2

over horizontal and vertical texel edges inside the charts, ``q_e`` the slope target converted to UV
differences and averaged over the edge's two texels, ``w_e = floor + confidence`` (the ``floor`` lets
unobserved texels follow their neighbours smoothly towards flat), ``lambda = 1 / L^2`` with ``L`` the
detail's largest scale in texels: what is wider than ``L`` (biases of the base mesh or the light, which
look like slow slopes) is not integrated into the height. Edges that leave the charts have no weight
(seams are not connected). :func:`tangent_normals` gives the glTF tangent-space normals of a height map
(``normalize(-dh/dt, -dh/db, 1)`` from central differences, as the ground truth).

Shapes: R x R maps (row 0 = top = v 1), M texels inside the charts.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..geometry import vertex_normals
from ..models.base import HeadModel
from .uvmap import UVTexels

__all__ = ["TangentGeometry", "HeightIntegrator", "tangent_normals", "uv_gradient"]


class TangentGeometry:
    """Per texel of ``texels``: template ``Ju``/``Jv`` (M, 3) metres per UV unit, ``tangent``/``bitangent``/``normal``
    (M, 3) unit, ``grad_t``/``grad_b`` (M, 2) (see the module docstring). float64."""

    def __init__(self, model: HeadModel, texels: UVTexels):
        self.texels = texels
        v = model.v_template.double()
        vn = vertex_normals(v[None], model.faces.long())[0]
        f, uv = texels.faces, texels.uvs.double()[texels.uv_faces]
        bary = texels.bary.double()
        n = torch.nn.functional.normalize(torch.einsum("mkc,mk->mc", vn[f], bary), dim=-1)
        P = torch.stack([v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]], -1)  # (M,3,2)
        D = torch.stack([uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]], -1)  # (M,2,2)
        ok = torch.linalg.det(D).abs() > 1e-12
        eye = torch.eye(2, dtype=torch.float64).expand_as(D)
        J = P @ torch.linalg.inv(torch.where(ok[:, None, None], D, eye)) * ok[:, None, None]
        JtJ = J.transpose(1, 2) @ J
        good = ok & (torch.linalg.det(JtJ).abs() > 1e-18)
        G = J @ torch.linalg.inv(torch.where(good[:, None, None], JtJ, eye)) * good[:, None, None]  # dual basis
        Ju = J[..., 0]
        t = torch.nn.functional.normalize(Ju - n * (n * Ju).sum(-1, keepdim=True), dim=-1)
        b = torch.linalg.cross(n, t)
        self.Ju, self.Jv, self.normal, self.tangent, self.bitangent = Ju, J[..., 1], n, t, b
        self.grad_t = torch.einsum("mcj,mc->mj", G, t)
        self.grad_b = torch.einsum("mcj,mc->mj", G, b)

    def uv_slopes(self, slopes: Tensor) -> Tensor:
        """(M, 2) (dh/du, dh/dv) (metres per UV unit) of (M, 2) tangent-frame slopes (dh/dt, dh/db)."""
        s = slopes.double()
        g3 = s[:, :1] * self.tangent + s[:, 1:] * self.bitangent  # the height's 3-D surface gradient
        return torch.stack([(g3 * self.Ju).sum(-1), (g3 * self.Jv).sum(-1)], -1)


def uv_gradient(h: Tensor) -> Tensor:
    """(R, R, 2) (dh/du, dh/dv) of an (R, R) map by central differences (one-sided at the border; v grows upwards)."""
    R = h.shape[0]
    gy, gx = torch.gradient(h.double())
    return torch.stack([gx * R, -gy * R], -1)


def tangent_normals(height: Tensor, geometry: TangentGeometry) -> Tensor:
    """(R, R, 3) unit tangent-space normals (glTF) of an (R, R) height map (metres); (0, 0, 1) outside the charts."""
    tx = geometry.texels
    g = uv_gradient(height).reshape(-1, 2)[tx.index]
    st, sb = (g * geometry.grad_t).sum(-1), (g * geometry.grad_b).sum(-1)
    n = torch.nn.functional.normalize(torch.stack([-st, -sb, torch.ones_like(st)], -1), dim=-1)
    out = torch.zeros(tx.resolution * tx.resolution, 3, dtype=torch.float64)
    out[:, 2] = 1
    out[tx.index] = n
    return out.view(tx.resolution, tx.resolution, 3).float()


class HeightIntegrator:
    """Screened Poisson integration of slopes into a height map (see the module docstring).

    Args:
        geometry: the map's :class:`TangentGeometry`.
        scale_texels: ``L``, the widest detail kept, in texels.
        floor: edge weight where no frame constrains the slope (pulls towards flat).
        tol, max_iter: relative residual at which CG stops, and its iteration cap.
    """

    def __init__(self, geometry: TangentGeometry, scale_texels: float, floor: float = 0.05, tol: float = 1e-4,
                 max_iter: int = 400):
        self.geometry, self.floor, self.tol, self.max_iter = geometry, floor, tol, max_iter
        self.lam = 1.0 / max(scale_texels, 1.0) ** 2
        self.iterations = 0  #: CG iterations of the last call

    def __call__(self, slopes: Tensor, confidence: Tensor, initial: Optional[Tensor] = None) -> Tensor:
        """(R, R) height (metres) from (M, 2) slopes (dh/dt, dh/db) and (M,) confidences in [0, 1]."""
        tx = self.geometry.texels
        R = tx.resolution
        grid = lambda m: tx.to_image(m.double().reshape(len(m), -1))  # noqa: E731  (R,R,C)
        q = grid(self.geometry.uv_slopes(slopes) / R)  # (R,R,2) height change per texel step along +u, +v
        c = grid(confidence)[..., 0]
        inside = grid(torch.ones(tx.count))[..., 0] > 0
        # Horizontal edges (i, j)-(i, j+1): dh = +dh/du step; vertical (i, j)-(i+1, j): the row grows downwards, v falls.
        both_x, both_y = inside[:, 1:] & inside[:, :-1], inside[1:] & inside[:-1]
        cx, cy = torch.minimum(c[:, 1:], c[:, :-1]), torch.minimum(c[1:], c[:-1])
        self.wx = torch.where(both_x, self.floor + cx, torch.zeros_like(cx))
        self.wy = torch.where(both_y, self.floor + cy, torch.zeros_like(cy))
        tgt_x = 0.5 * (q[:, 1:, 0] + q[:, :-1, 0]) * cx / (self.floor + cx)
        tgt_y = -0.5 * (q[1:, :, 1] + q[:-1, :, 1]) * cy / (self.floor + cy)
        self.screen = torch.where(inside, self.lam, 1.0).double()  # outside the charts h is held at 0
        rhs = self._div(self.wx * tgt_x, self.wy * tgt_y)
        h = self._cg(rhs, torch.zeros_like(rhs) if initial is None else initial.double())
        return torch.where(inside, h, torch.zeros_like(h)).float()

    @staticmethod
    def _div(ex: Tensor, ey: Tensor) -> Tensor:
        """D^T applied to edge values: (R, R-1) horizontal and (R-1, R) vertical -> (R, R)."""
        out = torch.zeros(ex.shape[0], ey.shape[1], dtype=torch.float64)
        out[:, 1:] += ex
        out[:, :-1] -= ex
        out[1:] += ey
        out[:-1] -= ey
        return out

    def _apply(self, h: Tensor) -> Tensor:
        """(D^T W D + screen) h."""
        return self._div(self.wx * (h[:, 1:] - h[:, :-1]), self.wy * (h[1:] - h[:-1])) + self.screen * h

    def _cg(self, b: Tensor, x: Tensor) -> Tensor:
        diag = self.screen.clone()
        diag[:, 1:] += self.wx
        diag[:, :-1] += self.wx
        diag[1:] += self.wy
        diag[:-1] += self.wy
        inv = 1.0 / diag
        r = b - self._apply(x)
        z = inv * r
        p = z.clone()
        rz = (r * z).sum()
        bnorm = float(b.norm()) or 1.0
        self.iterations = 0
        for k in range(self.max_iter):
            Ap = self._apply(p)
            alpha = rz / (p * Ap).sum()
            x = x + alpha * p
            r = r - alpha * Ap
            self.iterations = k + 1
            if float(r.norm()) < self.tol * bnorm:
                break
            z = inv * r
            rz_new = (r * z).sum()
            p = z + (rz_new / rz) * p
            rz = rz_new
        return x

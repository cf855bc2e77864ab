"""Self-shadowing of a Gaussian head for relighting, precomputed once: per-vertex SH light transfer of the rest mesh.

What it approximates. A point of the head lit by an environment ``L`` receives the irradiance
``E = integral L(w) vis(w) max(0, n.w) dw``; ``vis`` (the head's own occlusion: the nose, the eye sockets, the
inside of the mouth) is what keeps the capture light's shadows out of a relightable albedo. Here, per vertex of
the head's *rest* mesh (the identity at zero pose and expression):

* ``vis`` is the binary shadow-map visibility of :class:`avatar3d.appearance.visibility.VertexVisibility`
  (the appearance stage's, towards D nearly uniform directions), and
* it is projected with the cosine onto the real SH of bands 0-2 (precomputed radiance transfer, Sloan et al. 2002):
  ``T_occ[v, i] = sum_d vis[v, d] max(0, n_v.d) Y_i(d) dOmega`` and ``T_free`` without ``vis``.

For a frame the light's SH is turned into the rest frame (the head rotation ``R``, Kabsch on the vertices, and an
exact 9 x 9 rotation of the SH coefficients), and ``shadow = (T_occ . L) / (T_free . L)`` (per colour, in
[0, 1]) is the fraction of the vertex's irradiance that the head does not block. It multiplies the diffuse
irradiance that a Gaussian computes with its own normal; ``ao = T_occ[0] / T_free[0]`` (the cosine-weighted
visible fraction, independent of the light) multiplies its specular. Both reach the Gaussians through their
parent triangle (mean of its three vertices).

Approximations, on purpose (cheap: per frame one SVD of 3 x 3, a (V, 9) x (9, 3) product): the light's
occluded irradiance is band-limited to 9 SH coefficients (shadows are soft: a key light's nose shadow is a
gradient, not an edge); the expressions' changes of occlusion (an open mouth) are ignored (the mesh is the rest
one); off-surface Gaussians (hair) take their triangle's value. Shapes: V vertices, F triangles, N Gaussians, B frames.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..geometry import vertex_normals
from ..render.lighting import fibonacci_sphere, sh_basis

__all__ = ["SHTransfer", "sh_rotation", "head_rotations"]

#: Directions of the least-squares fit that rotates SH coefficients (any >= 9 in general position is exact).
_FIT_DIRS = torch.as_tensor(fibonacci_sphere(32), dtype=torch.float32)


def sh_rotation(R: Tensor) -> Tensor:
    """(B, 9, 9) matrices M with ``M @ L`` the SH coefficients (bands 0-2) of ``w -> f(R w)`` when ``L`` (9, C) are
    those of ``f``: a world light seen from a head turned by ``R`` (B, 3, 3) (rest-frame coefficients)."""
    Y = sh_basis(_FIT_DIRS.to(R), 3)  # (K, 9)
    Yr = sh_basis(_FIT_DIRS.to(R) @ R.transpose(-1, -2), 3)  # (B, K, 9): rows Y(R d)
    return torch.linalg.pinv(Y)[None] @ Yr


def head_rotations(rest: Tensor, posed: Tensor) -> Tensor:
    """(B, 3, 3) rotations R with ``posed_b - mean ~ R (rest - mean)`` (Kabsch) of (V, 3) and (B, V, 3) vertices."""
    a = rest.double() - rest.double().mean(0)
    b = posed.double() - posed.double().mean(1, keepdim=True)
    U, _, Vt = torch.linalg.svd(b.transpose(1, 2) @ a)
    d = torch.sign(torch.det(U @ Vt))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return (U @ D @ Vt).to(posed.dtype)


class SHTransfer:
    """Per-vertex occluded and free SH transfer of a rest mesh (see the module docstring).

    Args:
        rest: (V, 3) rest vertices, metres; faces: (F, 3); directions, resolution: of the shadow maps
        (:class:`~avatar3d.appearance.visibility.VertexVisibility`).
    Attributes: ``rest`` (V, 3), ``faces`` (F, 3) long, ``occluded`` and ``free`` (V, 9).
    """

    def __init__(self, rest: Tensor, faces: Tensor, occluded: Tensor, free: Tensor):
        self.rest, self.faces = rest.float(), faces.long()
        self.occluded, self.free = occluded.float(), free.float()

    @classmethod
    def compute(cls, rest: Tensor, faces: Tensor, directions: int = 128, resolution: int = 96) -> "SHTransfer":
        """Shadow maps towards ``directions`` directions (about a second on two idle cores, once per avatar)."""
        from ..appearance.visibility import VertexVisibility

        vis = VertexVisibility(rest.float(), faces, directions=directions, resolution=resolution)
        n = vertex_normals(rest.float()[None], faces.long())[0]
        d = vis.directions
        cos = (n @ d.T).clamp(min=0) * (4 * np.pi / len(d))  # (V, D) cosine times solid angle
        Y = sh_basis(d, 3)  # (D, 9)
        return cls(rest, faces, (cos * vis.visible) @ Y, cos @ Y)

    def state(self) -> dict[str, Tensor]:
        return {"rest": self.rest, "faces": self.faces, "occluded": self.occluded, "free": self.free}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> "SHTransfer":
        return cls(state["rest"], state["faces"], state["occluded"], state["free"])

    def ambient(self) -> Tensor:
        """(F,) cosine-weighted visible fraction per triangle (light independent; specular occlusion)."""
        ao = (self.occluded[:, 0] / self.free[:, 0].clamp(min=1e-9)).clamp(0, 1)
        return ao[self.faces].mean(1)

    def shadow(self, posed: Tensor, light_sh: Tensor, rotation: Optional[Tensor] = None) -> Tensor:
        """(B, F, C) diffuse shadow factor per triangle of posed vertices (B, V, 3) under the world radiance SH
        ``light_sh`` (9, C) (differentiable in it); ``rotation`` (B, 3, 3) the head rotations if known."""
        R = head_rotations(self.rest, posed.detach()) if rotation is None else rotation
        local = sh_rotation(R.to(light_sh)) @ light_sh  # (B, 9, C) light in the rest frame
        occ = self.occluded.to(light_sh) @ local  # (B, V, C)
        free = self.free.to(light_sh) @ local
        # Where the free irradiance is ~0 (facing away from all light) the ratio means nothing: no shadow there.
        factor = torch.where(free > 1e-4 * free.abs().amax(1, keepdim=True).clamp(min=1e-9), occ / free.clamp(min=1e-9),
                             torch.ones_like(occ)).clamp(0, 1)
        return factor[:, self.faces].mean(2)

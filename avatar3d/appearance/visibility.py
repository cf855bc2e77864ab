"""Self-shadowing of the head: which directions of the environment each vertex sees, from shadow maps.

The capture light's shadows (under the nose, in the eye sockets, inside the mouth) must not be baked
into the albedo, and a relit head must be shadowed by its new light. :class:`VertexVisibility`
precomputes, once per capture, a binary visibility ``vis[v, d]`` of every vertex of a rest mesh (the
head's identity at zero pose, mean expression) towards ``D`` nearly uniform directions (Fibonacci,
in the head's own frame): one orthographic depth map per direction through the library's mesh
rasterizer (:func:`avatar3d.render.mesh.rasterize`, all directions in one batch), a vertex being visible
when nothing lies more than ``bias`` metres in front of it towards the light. The head turns in a
fixed world light, so frame ``f`` with head rotation ``R_f`` (:func:`head_rotation`, Kabsch on the
vertices) sees world direction ``w`` where its rest mesh sees ``R_f^T w``: :meth:`VertexVisibility.towards`
looks that up (nearest of the D directions, softened over ``neighbours``), so the expressions' small
changes of self-shadowing are ignored and no per-frame ray casting is needed.

:class:`LightTransfer` turns it into what shading needs per frame, for an environment sampled at W
world directions with solid angles (an equirectangular grid, :func:`env_grid`): the per-vertex transfer
``T[v, w] = vis(v, w) max(0, n_v . w) dOmega_w`` (irradiance ``E_v = T_v @ L``), the diffuse shadow
factor (visible over unoccluded irradiance) and ambient occlusion (the cosine-weighted visible
fraction, used as specular occlusion).

Cost on two cores (built-in head, 12.8k vertices, D = 256 directions at 192^2): ~2-4 s once; per frame
a (V, W) lookup. Shapes: V vertices, D rest-frame directions, W environment directions.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..geometry import vertex_normals
from ..render.lighting import EnvironmentMap, equirect_directions, fibonacci_sphere
from ..render.mesh import interpolate, rasterize

__all__ = ["VertexVisibility", "LightTransfer", "head_rotation", "env_grid", "downsample_env"]


def head_rotation(rest: Tensor, posed: Tensor) -> Tensor:
    """(3, 3) rotation R with ``posed - mean ~ R (rest - mean)`` (Kabsch) of (V, 3) vertex sets."""
    a = rest.double() - rest.double().mean(0)
    b = posed.double() - posed.double().mean(0)
    U, _, Vt = torch.linalg.svd(b.T @ a)
    d = torch.sign(torch.det(U @ Vt))
    return (U @ torch.diag(torch.tensor([1.0, 1.0, float(d)], dtype=torch.float64)) @ Vt).float()


def env_grid(height: int = 16) -> tuple[Tensor, Tensor]:
    """World directions (W, 3) and solid angles (W,) of an equirectangular grid ``height`` x ``2 height``
    (W = 2 height^2, :func:`~avatar3d.render.lighting.equirect_directions`' layout)."""
    dirs = equirect_directions(height, 2 * height).reshape(-1, 3)
    area = EnvironmentMap(np.zeros((height, 2 * height, 3), np.float32)).solid_angles().reshape(-1)
    return torch.as_tensor(dirs, dtype=torch.float32), torch.as_tensor(area, dtype=torch.float32)


def downsample_env(env: EnvironmentMap, height: int = 16) -> Tensor:
    """(W, 3) mean radiance of ``env`` over each pixel of the :func:`env_grid` of ``height`` rows (solid-angle
    weighted box average; ``env``'s height must be a multiple of ``height``)."""
    H, Wd = env.shape
    f = H // height
    w = env.solid_angles()
    flux = (env.pixels.astype(np.float64) * w[..., None]).reshape(height, f, 2 * height, Wd // (2 * height), 3).sum((1, 3))
    area = w.reshape(height, f, 2 * height, Wd // (2 * height)).sum((1, 3))
    return torch.as_tensor((flux / area[..., None]).reshape(-1, 3), dtype=torch.float32)


class VertexVisibility:
    """Binary visibility of every vertex of a rest mesh towards D directions (see the module docstring).

    Args:
        vertices: (V, 3) rest mesh, metres; faces: (F, 3).
        directions: D, the number of Fibonacci directions; resolution: pixels per side of each depth map;
        bias: metres a vertex may lie behind the nearest surface towards the light and still count as lit.
    Attributes: ``directions`` (D, 3), ``visible`` (V, D) float32 in {0, 1}, ``rest`` (V, 3).
    """

    def __init__(self, vertices: Tensor, faces: Tensor, directions: int = 256, resolution: int = 192, bias: float = 2.5e-3,
                 batch: int = 64):
        self.rest = vertices.float()
        self.directions = torch.as_tensor(fibonacci_sphere(directions), dtype=torch.float32)
        tri = faces.to(torch.int32).contiguous()
        centre = self.rest.mean(0)
        p = self.rest - centre
        extent = float(p.norm(dim=-1).max()) * 1.02
        normals = vertex_normals(self.rest[None], faces.long())[0]
        cols = [self._batch(p, normals, tri, self.directions[i:i + batch], extent, resolution, bias) for i in range(0, directions, batch)]
        self.visible = torch.cat(cols, 1)

    @staticmethod
    def _batch(p: Tensor, normals: Tensor, tri: Tensor, dirs: Tensor, extent: float, res: int, bias: float) -> Tensor:
        """(V, B) visibility towards ``dirs`` (B, 3) of centred vertices ``p`` (V, 3) with unit normals (V, 3)."""
        t1 = torch.nn.functional.normalize(torch.cross(dirs, torch.tensor([[0.31, 0.77, 0.55]]).expand_as(dirs), dim=-1), dim=-1)
        t2 = torch.cross(dirs, t1, dim=-1)
        u, v, h = p @ t1.T, p @ t2.T, p @ dirs.T  # (V, B): image coordinates and height towards the light
        # Clip space: x, y in [-1, 1]; the surface nearest the light (largest h) must win the depth test (smallest z).
        pos = torch.stack([u / extent, v / extent, -h / extent * 0.9, torch.ones_like(u)], -1).permute(1, 0, 2).contiguous()
        rast, _ = rasterize(pos, tri, (res, res))
        top = interpolate(h.T[..., None].contiguous(), rast, tri)[0][..., 0]  # (B, res, res) height of the nearest surface
        top = torch.where(rast[..., 3] > 0, top, torch.full_like(top, -1e9))
        # A vertex's pixel; the 3x3 maximum would shadow every vertex near a silhouette, so one pixel, plus the bias.
        x = ((u / extent + 1) * 0.5 * res - 0.5).round().long().clamp(0, res - 1)
        y = ((v / extent + 1) * 0.5 * res - 0.5).round().long().clamp(0, res - 1)
        b = torch.arange(dirs.shape[0])[None].expand_as(x)
        # Slope-scaled bias: towards a grazing direction the vertex's own surface rises by a pixel times tan(angle)
        # within its pixel (without it ~8 % of the face's light was lost to false self-shadowing).
        c = (normals @ dirs.T).clamp(min=0.05)
        slope = (2 * extent / res) * torch.sqrt(1 - c * c) / c
        return (h >= top[b, y, x] - bias - slope.clamp(max=0.02)).float()

    def towards(self, world_dirs: Tensor, rotation: Tensor, neighbours: int = 3) -> Tensor:
        """(V, W) visibility in [0, 1] towards world directions (W, 3) of the mesh turned by ``rotation`` (3, 3):
        the rest-frame directions nearest ``R^T w``, weighted by closeness (a soft shadow edge)."""
        local = world_dirs.float() @ rotation.float()  # rows R^T w
        cos, idx = (local @ self.directions.T).topk(neighbours, dim=1)  # (W, k)
        w = torch.softmax(cos * 40.0, dim=1)  # ~0.025 rad^-2: neighbours within a spacing share the weight
        return torch.einsum("vwk,wk->vw", self.visible[:, idx], w)


class LightTransfer:
    """Per-frame light transfer of the vertices towards an environment grid (see the module docstring).

    Args: visibility: the capture's :class:`VertexVisibility`; dirs (W, 3), area (W,) the environment grid
    (:func:`env_grid`); faces (F, 3) for the normals.
    """

    def __init__(self, visibility: VertexVisibility, dirs: Tensor, area: Tensor, faces: Tensor):
        self.vis, self.dirs, self.area, self.faces = visibility, dirs.float(), area.float(), faces.long()

    def transfer(self, posed: Tensor, normals: Optional[Tensor] = None, occlusion: bool = True) -> Tensor:
        """(V, W) ``vis max(0, n.w) dOmega`` of posed vertices (V, 3) (``occlusion`` False: no visibility)."""
        n = vertex_normals(posed[None].float(), self.faces)[0] if normals is None else normals
        T = (n @ self.dirs.T).clamp(min=0) * self.area
        if occlusion:
            T = T * self.vis.towards(self.dirs, head_rotation(self.vis.rest, posed))
        return T

    def factors(self, posed: Tensor, radiance: Tensor) -> tuple[Tensor, Tensor]:
        """Diffuse shadow factor (V, 3) (visible / unoccluded irradiance under ``radiance`` (W, 3) on this grid)
        and ambient occlusion (V, 1) (cosine-weighted visible fraction) of posed vertices (V, 3)."""
        n = vertex_normals(posed[None].float(), self.faces)[0]
        free = self.transfer(posed, n, occlusion=False)
        T = free * self.vis.towards(self.dirs, head_rotation(self.vis.rest, posed))
        shadow = (T @ radiance) / (free @ radiance).clamp(min=1e-9)
        ao = T.sum(1, keepdim=True) / free.sum(1, keepdim=True).clamp(min=1e-9)
        return shadow.clamp(0, 1), ao.clamp(0, 1)

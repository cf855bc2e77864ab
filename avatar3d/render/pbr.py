"""A small physically based mesh renderer: UV material maps shaded by :mod:`.brdf` under an environment map.

"Our maps shaded by our renderer": the appearance stage scores its estimated maps with it (against
Mitsuba), the viewer and the avatar reuse it. One frame is

1. **raster**: the mesh split at UV seams (one render vertex per UV vertex, :class:`SeamMesh`) through
   :func:`.mesh.rasterize` with the library camera (OpenCV ``K``, ``world_to_cam``);
2. **surface**: interpolated position, vertex normal, UV tangent frame and UV; the maps sampled
   bilinearly (:class:`PBRMaterial`: albedo, specular intensity, roughness, tangent-space normal map,
   glTF conventions, rows of the maps top = UV v 1 as in :mod:`avatar3d.appearance.maps`);
3. **shading**: :func:`.brdf.shade` (SH irradiance for the diffuse lobe, prefiltered split sum for the
   specular lobe) under :class:`PBRLight`; optional per-vertex occlusion (:class:`Occlusion`: diffuse
   shadow factor and specular occlusion, e.g. from :mod:`avatar3d.appearance.visibility`) multiplies the lobes.

All linear radiance; the head frame's directions are world directions (the environment is fixed in
the world, the head turns in it). Shapes: V mesh vertices, T UV vertices, F triangles, H x W pixels,
R x R maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..geometry import vertex_normals
from .brdf import PrefilteredEnvironment, shade, specular_to_f0, split_sum_lut
from .camera import raster_intrinsics, world_to_clip
from .lighting import EnvironmentMap
from .mesh import interpolate, rasterize, texture

__all__ = ["SeamMesh", "PBRMaterial", "PBRLight", "Occlusion", "PBRRender", "render_pbr", "uv_tangents"]


def uv_tangents(positions: Tensor, uvs: Tensor, faces: Tensor) -> Tensor:
    """(T, 3) unit tangents (direction of +u on the surface) per vertex of a mesh with per-vertex UVs:
    positions (T, 3), uvs (T, 2), faces (F, 3) long; the faces' UV Jacobians area-weighted onto their vertices."""
    p = positions[faces]  # (F,3,3)
    t = uvs[faces]  # (F,3,2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    sign = torch.where(det >= 0, 1.0, -1.0).to(positions)
    tang = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * sign[:, None]  # dp/du times |det| (area weight)
    out = torch.zeros_like(positions).index_add_(0, faces.reshape(-1), tang.repeat_interleave(3, 0))
    return torch.nn.functional.normalize(out, dim=-1, eps=1e-12)


class SeamMesh:
    """A head model's mesh split at its UV seams: render vertex k is mesh vertex ``vertex_of_uv[k]`` with UV ``uvs[k]``.

    Args: faces (F, 3) mesh triangles, uvs (T, 2) (origin bottom-left), uv_faces (F, 3).
    """

    def __init__(self, faces: Tensor, uvs: Tensor, uv_faces: Tensor):
        self.faces = torch.as_tensor(faces).long()
        self.uv_faces = torch.as_tensor(uv_faces).long()
        self.uvs = torch.as_tensor(uvs).float()
        self.vertex_of_uv = torch.zeros(len(self.uvs), dtype=torch.long)
        self.vertex_of_uv[self.uv_faces.reshape(-1)] = self.faces.reshape(-1)
        self.tri = self.uv_faces.to(torch.int32).contiguous()

    @classmethod
    def of(cls, model) -> "SeamMesh":
        """From a head model with ``faces``, ``uvs``, ``uv_faces``."""
        return cls(model.faces, model.uvs, model.uv_faces)

    def attributes(self, vertices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per render vertex (T, 3) positions, unit normals and unit tangents of posed mesh ``vertices`` (V, 3)."""
        n = vertex_normals(vertices[None].float(), self.faces)[0][self.vertex_of_uv]
        p = vertices.float()[self.vertex_of_uv]
        return p, n, uv_tangents(p, self.uvs, self.uv_faces)


@dataclass
class PBRMaterial:
    """UV maps (R x R, row 0 at UV v = 1) as torch tensors: ``albedo`` (R, R, 3) linear, ``specular`` (R, R)
    intensity (f0 = 0.08 specular), ``roughness`` (R, R) perceptual, ``normal`` (R, R, 3) tangent space (glTF)
    or None (flat)."""

    albedo: Tensor
    specular: Tensor
    roughness: Tensor
    normal: Optional[Tensor] = None

    @classmethod
    def of(cls, albedo, specular, roughness, normal=None) -> "PBRMaterial":
        """From arrays (numpy or torch, e.g. the fields of :class:`avatar3d.appearance.maps.AppearanceMaps`)."""
        t = lambda a: None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        return cls(t(albedo), t(specular), t(roughness), t(normal))

    def texture(self) -> Tensor:
        """(1, R, R, C) the maps stacked for one sampling pass: albedo 3, specular 1, roughness 1, normal 0 or 3,
        rows flipped so that :func:`.mesh.texture`'s v = 0 is the map's bottom row."""
        parts = [self.albedo, self.specular[..., None], self.roughness[..., None]]
        if self.normal is not None:
            parts.append(self.normal)
        return torch.cat(parts, -1).flip(0)[None].contiguous()


@dataclass
class PBRLight:
    """An environment for :func:`.brdf.shade`: ``sh`` (9, 3) radiance SH (diffuse), ``prefiltered`` its GGX
    prefiltered stack (specular), ``lut`` the split-sum table."""

    sh: Tensor
    prefiltered: PrefilteredEnvironment
    lut: Tensor

    @classmethod
    def of(cls, env: EnvironmentMap, width: int = 128) -> "PBRLight":
        """Prefilters ``env`` (about 1 s on two cores; build once per map)."""
        return cls(torch.as_tensor(env.sh(), dtype=torch.float32), PrefilteredEnvironment.from_environment(env, width=width),
                   split_sum_lut())


@dataclass
class Occlusion:
    """Per-vertex (mesh vertices, V) light occlusion of a posed mesh: ``diffuse`` (V, 3) factor on the SH irradiance
    (visible over unoccluded irradiance of this light), ``specular`` (V, 1) factor on the split-sum specular."""

    diffuse: Tensor
    specular: Tensor


@dataclass
class PBRRender:
    """One rendered frame: ``rgb`` (H, W, 3) = ``diffuse`` + ``specular`` linear radiance, ``alpha`` (H, W)
    coverage (0/1), ``normal`` (H, W, 3) shading normals (world), ``triangle`` (H, W) long mesh triangle (-1 none)."""

    rgb: Tensor
    diffuse: Tensor
    specular: Tensor
    alpha: Tensor
    normal: Tensor
    triangle: Tensor


def _perturb(n: Tensor, t: Tensor, nmap: Tensor) -> Tensor:
    """World normals (..., 3) from tangent-space normals ``nmap`` on the frame of normals ``n`` and tangents ``t``
    (glTF: x along +u, y = n x t along +v, z = n)."""
    n = torch.nn.functional.normalize(n, dim=-1, eps=1e-12)
    t = torch.nn.functional.normalize(t - (t * n).sum(-1, keepdim=True) * n, dim=-1, eps=1e-12)
    b = torch.cross(n, t, dim=-1)
    out = nmap[..., :1] * t + nmap[..., 1:2] * b + nmap[..., 2:3] * n
    return torch.nn.functional.normalize(out, dim=-1, eps=1e-12)


def render_pbr(mesh: SeamMesh, vertices: Tensor, K: Tensor, world_to_cam: Tensor, width: int, height: int,
               material: PBRMaterial, light: PBRLight, occlusion: Optional[Occlusion] = None) -> PBRRender:
    """Render posed mesh ``vertices`` (V, 3) metres with ``material`` under ``light`` through the camera
    (OpenCV ``K`` (3, 3), pixel centres at integers; ``world_to_cam`` (4, 4)) at ``width`` x ``height``.

    Pixels the mesh does not cover are zero (alpha 0); back-facing shading normals are black."""
    K, w2c = torch.as_tensor(K).float(), torch.as_tensor(world_to_cam).float()
    p, n, t = mesh.attributes(torch.as_tensor(vertices).float())
    pos = world_to_clip(p[None], raster_intrinsics(K)[None], w2c, width, height)
    rast, _ = rasterize(pos, mesh.tri, (height, width))
    attrs = [p, n, t, mesh.uvs]
    if occlusion is not None:
        attrs += [occlusion.diffuse.float()[mesh.vertex_of_uv], occlusion.specular.float()[mesh.vertex_of_uv]]
    pix = interpolate(torch.cat(attrs, -1)[None].contiguous(), rast, mesh.tri)[0][0]  # (H, W, A)
    alpha = (rast[0, ..., 3] > 0).float()
    P, N, T, uv = pix[..., :3], pix[..., 3:6], pix[..., 6:9], pix[..., 9:11]
    maps = texture(material.texture(), uv[None].contiguous(), filter_mode="linear", boundary_mode="clamp")[0]
    albedo, spec, rough = maps[..., :3], maps[..., 3:4], maps[..., 4:5]
    N = _perturb(N, T, maps[..., 5:8]) if material.normal is not None else torch.nn.functional.normalize(N, dim=-1, eps=1e-12)
    centre = -w2c[:3, :3].T @ w2c[:3, 3]
    view = torch.nn.functional.normalize(centre - P, dim=-1, eps=1e-12)
    diff, specular = shade(N, view, albedo, rough.clamp(0, 1), specular_to_f0(spec), light.sh, light.prefiltered, light.lut)
    if occlusion is not None:
        diff, specular = diff * pix[..., 11:14], specular * pix[..., 14:15]
    diff, specular = diff * alpha[..., None], specular * alpha[..., None]
    return PBRRender(rgb=diff + specular, diffuse=diff, specular=specular, alpha=alpha, normal=N * alpha[..., None],
                     triangle=rast[0, ..., 3].long() - 1)

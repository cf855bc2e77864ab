"""Physically based shading: Lambert diffuse + GGX (Cook-Torrance) specular, differentiable in torch.

The appearance stage and the relightable avatar shade with these functions; the lights themselves
(SH basis, environment maps, prefiltering) are in :mod:`.lighting`. Directions are unit vectors in
one frame (the head frame: +Y up, face towards +Z); radiance is linear RGB. Every function takes any
batch shape ``...``: normals / view directions (..., 3), albedo (..., 3) linear, roughness and f0
(..., 1) (broadcast against each other).

**The BRDF** (Filament's / Unreal's standard model, no multiple-scattering compensation)::

    f(l, v) = albedo / pi + D(h) V(l, v) F(v.h)

* ``v`` points from the surface to the camera, ``l`` to the light, ``h = normalize(l + v)``;
* ``D``: GGX / Trowbridge-Reitz, ``alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)``;
* ``V = G / (4 n.l n.v)``: Smith's *height-correlated* masking-shadowing (Heitz 2014), in the form
  ``0.5 / (n.l sqrt((n.v)^2 (1 - a^2) + a^2) + n.v sqrt((n.l)^2 (1 - a^2) + a^2))``;
* ``F``: Schlick, ``f0 + (1 - f0) (1 - v.h)^5`` (achromatic f0, a dielectric).

The diffuse term is not attenuated by ``1 - F`` (as in Filament and Unreal): the two lobes add.

**Conventions.** ``roughness`` is perceptual (what ``roughness.png`` and glTF's metallicRoughness
store); the GGX width is ``alpha = roughness^2`` (Burley 2012; glTF, Filament, Mitsuba's principled).
``f0`` is the reflectance at normal incidence. A *specular intensity* map (``specular.png``, glTF's
``KHR_materials_specular`` factor, Filament's ``reflectance``) maps to it as
``f0 = 0.08 * specular`` (:func:`specular_to_f0`): specular 0.5 is the common dielectric f0 0.04,
skin's f0 0.028 (IOR 1.4) is specular 0.35. :func:`ior_to_f0` converts an index of refraction.

**Image-based lighting.** Under an environment map the diffuse lobe uses the map's SH irradiance
(Ramamoorthi & Hanrahan; exact for bands 0-2, :func:`irradiance`) and the specular lobe the split
sum (Karis 2013): :class:`PrefilteredEnvironment` (the map convolved with the GGX lobe at a stack of
roughness levels, linearly interpolated in roughness) times ``f0 * scale + bias`` of
:func:`split_sum_lut` (pre-integrated with *this* BRDF's D and V, unlike the IBL LUT
:func:`.lighting.brdf_lut` of the viewer). :func:`shade_reference` integrates the same BRDF over
every pixel of the map, the brute-force reference the split sum is measured against.

The head renderer's tracking shading (:meth:`.head.HeadRenderer.shade`, ``albedo * irradiance``) is a
separate, unchanged path: its fitted SH coefficients are this module's radiance SH divided by pi.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .lighting import COSINE_LOBE, EnvironmentMap, equirect_directions, sh_basis, sh_count

__all__ = [
    "F0_PER_SPECULAR", "MIN_ROUGHNESS", "specular_to_f0", "f0_to_specular", "ior_to_f0", "f0_to_ior", "roughness_to_alpha",
    "reflect", "ggx_ndf", "smith_visibility", "schlick_fresnel", "brdf", "irradiance", "split_sum_lut", "lut_lookup",
    "prefilter_ggx", "PrefilteredEnvironment", "shade_diffuse", "shade_specular", "shade", "shade_reference",
]

#: f0 = F0_PER_SPECULAR * specular intensity (glTF KHR_materials_specular / Filament's ``reflectance``).
F0_PER_SPECULAR = 0.08
#: Roughness floor: below it alpha^2 underflows float32 and the GGX peak is a delta the maps cannot resolve.
MIN_ROUGHNESS = 0.03
_EPS = 1e-6


def specular_to_f0(specular):
    """Specular intensity (0..1, ``specular.png``) -> f0 (0..0.08)."""
    return specular * F0_PER_SPECULAR


def f0_to_specular(f0):
    """f0 -> specular intensity (inverse of :func:`specular_to_f0`)."""
    return f0 / F0_PER_SPECULAR


def ior_to_f0(ior):
    """Index of refraction (against air) -> f0 = ((ior - 1) / (ior + 1))^2; skin's 1.4 gives 0.028."""
    return ((ior - 1) / (ior + 1)) ** 2


def f0_to_ior(f0):
    """f0 -> index of refraction (inverse of :func:`ior_to_f0`)."""
    s = f0**0.5
    return (1 + s) / (1 - s)


def roughness_to_alpha(roughness: Tensor) -> Tensor:
    """GGX alpha = roughness^2 of perceptual roughness (clamped to :data:`MIN_ROUGHNESS`)."""
    return roughness.clamp(min=MIN_ROUGHNESS) ** 2


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def reflect(view: Tensor, normals: Tensor) -> Tensor:
    """(..., 3) mirror direction of ``view`` (surface -> camera) about ``normals``: ``2 (n.v) n - v``."""
    return 2 * _dot(normals, view) * normals - view


def ggx_ndf(noh: Tensor, alpha: Tensor) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution D (1/sr) at cos(n, h) ``noh`` (..., 1), width ``alpha``."""
    a2 = alpha * alpha
    d = noh * noh * (a2 - 1) + 1
    return a2 / (torch.pi * d * d)


def smith_visibility(nov: Tensor, nol: Tensor, alpha: Tensor) -> Tensor:
    """Height-correlated Smith ``V = G2 / (4 n.l n.v)`` for cosines (..., 1) in (0, 1]."""
    a2 = alpha * alpha
    gv = nol * torch.sqrt(nov * nov * (1 - a2) + a2)
    gl = nov * torch.sqrt(nol * nol * (1 - a2) + a2)
    return 0.5 / (gv + gl).clamp(min=1e-12)


def schlick_fresnel(f0: Tensor, voh: Tensor) -> Tensor:
    """Schlick's Fresnel ``f0 + (1 - f0) (1 - v.h)^5``."""
    return f0 + (1 - f0) * (1 - voh.clamp(0, 1)) ** 5


def brdf(normals: Tensor, view: Tensor, light: Tensor, albedo: Tensor, roughness: Tensor, f0: Tensor) -> tuple[Tensor, Tensor]:
    """The BRDF's two lobes (1/sr): diffuse ``albedo / pi`` (..., 3) and achromatic specular ``D V F`` (..., 1),
    zero where n.l <= 0 or n.v <= 0.

    Args:
        normals, view, light: (..., 3) unit vectors; ``view`` and ``light`` point away from the surface.
        albedo: (..., 3) linear diffuse albedo; roughness, f0: (..., 1) (see the module docstring).
    """
    nol, nov = _dot(normals, light), _dot(normals, view)
    lit = ((nol > 0) & (nov > 0)).to(albedo.dtype)
    h = torch.nn.functional.normalize(light + view, dim=-1, eps=1e-12)
    a = roughness_to_alpha(roughness)
    spec = ggx_ndf(_dot(normals, h).clamp(0, 1), a) * smith_visibility(nov.clamp(min=_EPS), nol.clamp(min=_EPS), a)
    spec = spec * schlick_fresnel(f0, _dot(view, h))
    return albedo / torch.pi * lit, spec * lit


# ----------------------------------------------------------------------------- diffuse: SH irradiance
def irradiance(normals: Tensor, coeffs: Tensor, bands: int = 3) -> Tensor:
    """(..., C) irradiance ``E(n) = sum_i A_l L_i Y_i(n)`` (W/m^2 per unit radiance) at unit normals (..., 3)
    from radiance SH ``coeffs`` (K >= bands^2, C) in :mod:`.lighting`'s basis (``EnvironmentMap.sh``).

    ``bands`` 1-4; band 3 (the 4th) adds nothing: the cosine lobe's A_3 is 0. Bands 0-2 are within ~3 % of
    the exact irradiance of any map (Ramamoorthi & Hanrahan)."""
    k = sh_count(bands)
    c = torch.as_tensor(coeffs, dtype=normals.dtype, device=normals.device)[:k]
    lobe = torch.tensor([COSINE_LOBE[l] for l in range(bands) for _ in range(2 * l + 1)], dtype=normals.dtype, device=normals.device)
    return sh_basis(normals, bands) @ (lobe[:, None] * c)


# ----------------------------------------------------------------------------- specular: the split sum
@lru_cache(maxsize=4)
def _lut_numpy(size: int, samples: int) -> np.ndarray:
    """(size, size, 2) float64 (scale, bias); see :func:`split_sum_lut`."""
    t = (np.arange(size) + 0.5) / size
    rough, nov = np.meshgrid(t, t, indexing="ij")
    a = np.maximum(rough, MIN_ROUGHNESS)[..., None] ** 2
    side = int(np.ceil(np.sqrt(samples)))
    u1, u2 = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side, indexing="ij")
    u1, u2 = u1.reshape(-1), u2.reshape(-1)  # stratified: deterministic, converges as 1/samples in 2-D
    # GGX-distributed half vectors around n = +Z (pdf D(h) n.h); v in the xz plane.
    cos_t = np.sqrt((1 - u2) / (1 + (a * a - 1) * u2))
    hx, hz = np.sqrt(1 - cos_t * cos_t) * np.cos(2 * np.pi * u1), cos_t
    vx, vz = np.sqrt(1 - nov * nov)[..., None], nov[..., None]
    voh = vx * hx + vz * hz
    nol = 2 * voh * hz - vz  # l = 2 (v.h) h - v, its z
    ok = (nol > 0) & (voh > 0)
    a2 = a * a
    nl = np.maximum(nol, 1e-12)
    vis = 0.5 / (nl * np.sqrt(vz * vz * (1 - a2) + a2) + vz * np.sqrt(nl * nl * (1 - a2) + a2))
    # D V F n.l / pdf_l, pdf_l = D n.h / (4 v.h): the D cancels.
    w = np.where(ok, 4 * vis * nl * voh / hz, 0.0)
    fc = (1 - np.clip(voh, 0, 1)) ** 5
    return np.stack([((1 - fc) * w).mean(-1), (fc * w).mean(-1)], -1)


def split_sum_lut(size: int = 32, samples: int = 4096, device=None, dtype=torch.float32) -> Tensor:
    """(size, size, 2) pre-integrated specular ``(scale, bias)`` of :func:`brdf`'s GGX lobe: rows perceptual
    roughness, columns n.v, both at texel centres ``(i + 0.5) / size``. Under uniform radiance L the
    specular is ``L (f0 scale + bias)`` exactly (up to the quadrature); ``scale + bias`` < 1 is the energy
    the single-scattering lobe keeps at f0 = 1. Cached per (size, samples)."""
    return torch.as_tensor(_lut_numpy(int(size), int(samples)), dtype=dtype, device=device)


def _grid_sample(img: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear lookup of ``img`` (C, H, W) at normalised coords x, y (N,) in [-1, 1] (texel centres) -> (N, C)."""
    grid = torch.stack([x, y], -1).view(1, 1, -1, 2).to(img.dtype)
    out = torch.nn.functional.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def lut_lookup(lut: Tensor, roughness: Tensor, nov: Tensor) -> Tensor:
    """(..., 2) bilinear ``(scale, bias)`` from :func:`split_sum_lut` at roughness and n.v (..., 1); differentiable."""
    shape = torch.broadcast_shapes(roughness.shape, nov.shape)[:-1]
    r = roughness.expand(*shape, 1).reshape(-1)
    c = nov.expand(*shape, 1).reshape(-1)
    out = _grid_sample(lut.permute(2, 0, 1).to(r.dtype), c * 2 - 1, r * 2 - 1)  # x: columns (n.v), y: rows (roughness)
    return out.view(*shape, 2)


def _downsampled(env: EnvironmentMap, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Directions (P, 3), solid angles (P,) and mean radiance (P, 3) of ``env`` box-averaged to ``width`` columns
    (a power-of-two fraction of its width; solid-angle weighted, so the map's energy is kept)."""
    H, W = env.shape
    f = max(1, W // width)
    w = env.solid_angles()
    flux = (env.pixels.astype(np.float64) * w[..., None]).reshape(H // f, f, W // f, f, 3).sum((1, 3))
    area = w.reshape(H // f, f, W // f, f).sum((1, 3))
    dirs = equirect_directions(H // f, W // f).reshape(-1, 3)
    return (torch.as_tensor(dirs, dtype=torch.float32), torch.as_tensor(area.reshape(-1), dtype=torch.float32),
            torch.as_tensor((flux / area[..., None]).reshape(-1, 3), dtype=torch.float32))


def _mip_chain(env: EnvironmentMap) -> list[Tensor]:
    """(H_k, W_k, 3) float32 box-averaged copies of ``env`` (solid-angle weighted), halving down to 8 columns."""
    H, W = env.shape
    mips, width = [], W
    while width >= 8 and W % width == 0:
        mips.append(_downsampled(env, width)[2].view(H * width // W, width, 3))
        width //= 2
    return mips


def _equirect_uv(d: Tensor) -> Tensor:
    """(N, 2) equirectangular coordinates (longitude, latitude) in [0, 1] of unit directions (N, 3):
    (0, 0) is the top-left corner of the image (:func:`.lighting.equirect_directions`)."""
    lon = torch.atan2(d[:, 0], d[:, 2]) / (2 * torch.pi) + 0.5
    lat = 0.5 - torch.asin(d[:, 1].clamp(-1, 1)) / torch.pi
    return torch.stack([lon, lat], -1)


def _sample_uv(img: Tensor, uv: Tensor) -> Tensor:
    """(N, 3) bilinear radiance of an equirectangular image (H, W, 3) at :func:`_equirect_uv` coordinates
    (N, 2): longitude wraps (one wrapped column padded each side), latitude clamps at the poles' texel rows."""
    H, W = img.shape[:2]
    padded = torch.cat([img[:, -1:], img, img[:, :1]], 1).permute(2, 0, 1)[None]  # (1, 3, H, W + 2)
    x = uv[:, 0] * W + 0.5  # texel centres of the padded image at integers
    y = (uv[:, 1] * H - 0.5).clamp(0, H - 1)
    grid = torch.stack([x / (W + 1) * 2 - 1, y / max(H - 1, 1) * 2 - 1], -1).view(1, 1, -1, 2).to(img.dtype)
    out = torch.nn.functional.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].T


def _equirect_bilinear(img: Tensor, d: Tensor) -> Tensor:
    """(N, 3) bilinear radiance of an equirectangular image (H, W, 3) at unit directions (N, 3) (longitude wraps)."""
    return _sample_uv(img, _equirect_uv(d))


def _sample_stack(maps: Tensor, level: Tensor, uv: Tensor) -> Tensor:
    """(N, 3) radiance at :func:`_equirect_uv` coordinates (N, 2) from a stack of equirectangular images ``maps``
    (L, H, W, 3): bilinear in each (longitude wraps, as :func:`_sample_uv`), linear between the two images around the
    fractional index ``level`` (N,) in [0, L - 1]; differentiable in all three. One trilinear lookup of the stack
    (the same weights as blending two bilinear lookups, a third of the time of a lookup per level)."""
    L, H, W = maps.shape[:3]
    padded = torch.cat([maps[:, :, -1:], maps, maps[:, :, :1]], 2).permute(3, 0, 1, 2)[None].contiguous()  # (1, 3, L, H, W + 2)
    x = uv[:, 0] * W + 0.5  # texel centres of the padded images at integers
    y = (uv[:, 1] * H - 0.5).clamp(0, H - 1)
    z = level / max(L - 1, 1)
    grid = torch.stack([x / (W + 1) * 2 - 1, y / max(H - 1, 1) * 2 - 1, z * 2 - 1], -1).view(1, 1, 1, -1, 3).to(maps.dtype)
    out = torch.nn.functional.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0, 0].T


def _tangent_frames(n: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit tangents (N, 3) completing unit normals (N, 3) to orthonormal frames (Duff et al. 2017)."""
    sign = torch.where(n[:, 2] >= 0, 1.0, -1.0)
    a = -1.0 / (sign + n[:, 2])
    b = n[:, 0] * n[:, 1] * a
    t1 = torch.stack([1 + sign * n[:, 0] ** 2 * a, sign * b, -sign * n[:, 0]], -1)
    t2 = torch.stack([b, sign + n[:, 1] ** 2 * a, -n[:, 1]], -1)
    return t1, t2


def prefilter_ggx(env: EnvironmentMap, roughness: float, width: int = 128, samples: int = 256, chunk: int = 1024) -> Tensor:
    """(width / 2, width, 3) float32: ``env`` convolved with the GGX lobe of perceptual ``roughness`` under the
    split sum's n = v = r assumption (Karis 2013): for each output direction r the normalised integral of
    ``L(l) D(h) (r.l)`` over the sphere, h the half vector of r and l.

    Filtered importance sampling (Colbert & Krivanek 2007): ``samples`` stratified GGX directions per texel,
    each read from the mip of the map whose texel matches the sample's share of the lobe, so a small bright
    source (a sun) is averaged, not aliased. Roughness 0 is the map box-averaged to ``width``."""
    return _prefilter(_mip_chain(env), roughness, width, samples, chunk)


def _prefilter(mips: Sequence[Tensor], roughness: float, width: int, samples: int = 256, chunk: int = 1024) -> Tensor:
    """:func:`prefilter_ggx` from the map's :func:`_mip_chain`."""
    H, W = mips[0].shape[:2]
    out_dirs = torch.as_tensor(equirect_directions(width // 2, width).reshape(-1, 3), dtype=torch.float32)
    if roughness <= 0:
        same = [m for m in mips if m.shape[1] == width]
        return same[0] if same else _upsampled(mips[0], width)
    a2 = max(roughness, MIN_ROUGHNESS) ** 4
    side = int(np.ceil(np.sqrt(samples)))
    u = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    u1, u2 = (g.reshape(-1) for g in torch.meshgrid(u, u, indexing="ij"))
    cos_t = torch.sqrt((1 - u2) / (1 + (a2 - 1) * u2))
    sin_t, phi = torch.sqrt(1 - cos_t**2), 2 * torch.pi * u1
    h_local = torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], -1).float()  # (S, 3)
    nol = (2 * cos_t**2 - 1).float()  # l = 2 (n.h) h - n with v = n
    d = a2 / (torch.pi * (cos_t**2 * (a2 - 1) + 1) ** 2)
    # Solid angle of one sample, 1 / (S pdf_l), pdf_l = D / 4 (v.h = n.h), against a level-0 texel's (at the equator).
    lod = (0.5 * torch.log2(4 / (len(u1) * d) / (2 * torch.pi**2 / (H * W))) + 1).clamp(0, len(mips) - 1).float()
    keep = nol > 0
    h_local, nol, lod = h_local[keep], nol[keep], lod[keep]
    # Each sample reads two fixed mips (its lod is the same for every texel): group the samples by mip.
    groups = [(k, torch.nonzero(w > 0)[:, 0], w[w > 0]) for k in range(len(mips)) for w in [(1 - (lod - k).abs()).clamp(min=0)]]
    out = []
    for i in range(0, len(out_dirs), chunk):
        n = out_dirs[i:i + chunk]
        t1, t2 = _tangent_frames(n)
        h = h_local[None, :, :1] * t1[:, None] + h_local[None, :, 1:2] * t2[:, None] + h_local[None, :, 2:] * n[:, None]
        l = 2 * (h * n[:, None]).sum(-1, keepdim=True) * h - n[:, None]  # (c, S, 3)
        uv = _equirect_uv(l.reshape(-1, 3)).view(len(n), -1, 2)
        rad = n.new_zeros(len(n), 3)
        for k, idx, w in groups:
            if len(idx):
                look = _sample_uv(mips[k], uv[:, idx].reshape(-1, 2)).view(len(n), len(idx), 3)
                rad = rad + (look * (w * nol[idx])[None, :, None]).sum(1)
        out.append(rad / nol.sum())
    return torch.cat(out).view(width // 2, width, 3)


def _upsampled(img: Tensor, width: int) -> Tensor:
    """(width / 2, width, 3) bilinear resampling of an equirectangular image (H, W, 3)."""
    d = torch.as_tensor(equirect_directions(width // 2, width).reshape(-1, 3), dtype=img.dtype)
    return _equirect_bilinear(img, d).view(width // 2, width, 3)


@dataclass
class PrefilteredEnvironment:
    """An environment map convolved with the GGX lobe at a stack of roughness levels (the split sum's
    first factor): ``maps`` (L, H, W, 3) linear radiance, equirectangular (:func:`.lighting.equirect_directions`),
    one per ``levels`` (L,) ascending perceptual roughness starting at 0 (the map itself); ``turn``: degrees about
    +Y the stack is turned by when looked up (:meth:`rotated`)."""

    levels: Tensor
    maps: Tensor
    turn: float = 0.0

    #: Default roughness levels: 0.1 apart (skin's 0.3-0.6 sits on levels), 0.2 apart above 0.6.
    DEFAULT_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)

    @classmethod
    def from_environment(cls, env: EnvironmentMap, levels: Sequence[float] = DEFAULT_LEVELS, width: int = 128) -> "PrefilteredEnvironment":
        """Prefilters ``env`` at each roughness level onto ``width`` x ``width / 2`` pixels (:func:`prefilter_ggx`;
        from roughness 0.35 up, whose lobes span many texels, at half the width, upsampled bilinearly).
        About 1 s on two idle cores for the defaults (up to 20 s on a loaded machine): build it once per map."""
        if levels[0] != 0 or any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"roughness levels must start at 0 and increase, got {tuple(levels)}")
        mips = _mip_chain(env)
        maps = [_prefilter(mips, r, width) if r < 0.35 else _upsampled(_prefilter(mips, r, width // 2), width) for r in levels]
        return cls(torch.tensor(levels, dtype=torch.float32), torch.stack(maps))

    def rotated(self, degrees: float) -> "PrefilteredEnvironment":
        """The stack of the map turned ``degrees`` about +Y (:func:`.lighting.rotate_environment`'s sense: + moves the
        front towards +X), sharing ``maps``: prefiltering commutes with a rotation, and a turn about +Y moves only
        longitudes, so each lookup's longitude is turned back before sampling (exact at any angle, free)."""
        return PrefilteredEnvironment(self.levels, self.maps, self.turn + float(degrees))

    def radiance(self, dirs: Tensor, roughness: Tensor) -> Tensor:
        """(..., 3) prefiltered radiance at unit directions (..., 3) and perceptual roughness (..., 1):
        bilinear in each level (longitude wraps), linear between the two levels around ``roughness``;
        differentiable in both."""
        shape = torch.broadcast_shapes(dirs.shape[:-1], roughness.shape[:-1])
        d = dirs.expand(*shape, 3).reshape(-1, 3)
        r = roughness.expand(*shape, 1).reshape(-1).to(d.dtype).clamp(0, float(self.levels[-1]))
        lv = self.levels.to(d)
        hi = torch.searchsorted(lv, r.detach().contiguous(), right=True).clamp(1, len(lv) - 1)
        level = hi - 1 + (r - lv[hi - 1]) / (lv[hi] - lv[hi - 1])  # fractional index into the stack
        uv = _equirect_uv(d)
        if self.turn % 360.0 != 0.0:  # the turned map at d is the map at R^-1 d: longitude less the turn
            uv = torch.stack([(uv[:, 0] - self.turn / 360.0) % 1.0, uv[:, 1]], -1)
        return _sample_stack(self.maps.to(d), level, uv).view(*shape, 3)


# ----------------------------------------------------------------------------- shading under an environment
def shade_diffuse(normals: Tensor, albedo: Tensor, sh: Tensor, bands: int = 3) -> Tensor:
    """(..., 3) diffuse radiance ``albedo / pi * E(n)`` under radiance SH ``sh`` (K, 3) (:func:`irradiance`)."""
    return albedo / torch.pi * irradiance(normals, sh, bands)


def shade_specular(normals: Tensor, view: Tensor, roughness: Tensor, f0: Tensor, env: PrefilteredEnvironment,
                   lut: Tensor) -> Tensor:
    """(..., 3) split-sum specular radiance: ``env.radiance(reflect(v, n), roughness) * (f0 scale + bias)``."""
    nov = _dot(normals, view).clamp(min=_EPS, max=1.0)
    sb = lut_lookup(lut.to(nov), roughness.clamp(0, 1), nov)
    return env.radiance(reflect(view, normals), roughness) * (f0 * sb[..., :1] + sb[..., 1:])


def shade(normals: Tensor, view: Tensor, albedo: Tensor, roughness: Tensor, f0: Tensor, sh: Tensor,
          env: PrefilteredEnvironment, lut: Tensor, bands: int = 3) -> tuple[Tensor, Tensor]:
    """Radiance (..., 3) towards ``view`` of the diffuse (SH) and specular (split-sum) lobes, returned apart
    (their sum is the pixel); zero where the surface faces away from the camera."""
    front = (_dot(normals, view) > 0).to(albedo.dtype)
    return shade_diffuse(normals, albedo, sh, bands) * front, shade_specular(normals, view, roughness, f0, env, lut) * front


def shade_reference(normals: Tensor, view: Tensor, albedo: Tensor, roughness: Tensor, f0: Tensor, env: EnvironmentMap,
                    width: int = 0, chunk: int = 16) -> tuple[Tensor, Tensor]:
    """Brute-force (diffuse, specular) radiance (..., 3) of :func:`brdf` under ``env``: the sum over every
    map pixel of ``f L (n.l) dOmega`` (no SH, no split sum), float64; ``width`` > 0 box-averages the map to
    that many columns first. Exact up to the pixel size; slow (N x pixels BRDF evaluations).
    Inputs broadcast to a common batch shape."""
    shape = torch.broadcast_shapes(normals.shape[:-1], view.shape[:-1], albedo.shape[:-1], roughness.shape[:-1], f0.shape[:-1])
    flat = [t.expand(*shape, t.shape[-1]).reshape(-1, t.shape[-1]).double() for t in (normals, view, albedo, roughness, f0)]
    dirs, area, rad = (t.to(flat[0]) for t in _downsampled(env, width or env.shape[1]))
    flux = rad * area[:, None]
    diff, spec = [], []
    for i in range(0, len(flat[0]), chunk):
        n, v, al, ro, f = (t[i:i + chunk, None] for t in flat)  # (c, 1, k)
        fd, fs = brdf(n, v, dirs[None], al, ro, f)  # (c, P, 3), (c, P, 1)
        cos = _dot(n, dirs[None]).clamp(min=0)[..., 0]  # (c, P)
        diff.append(al[:, 0] / torch.pi * ((fd[..., :1] > 0) * cos[..., None] * flux).sum(1))
        spec.append((fs[..., 0] * cos) @ flux)
    return tuple(torch.cat(o).view(*shape, 3).to(normals.dtype) for o in (diff, spec))

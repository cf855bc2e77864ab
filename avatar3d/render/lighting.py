"""Lighting: the real spherical-harmonics basis, irradiance, environment maps and split-sum specular.

Directions are unit vectors in the head frame: +Y up, the face looks towards +Z. Radiance is
linear RGB. Functions that take directions accept a NumPy array or a torch tensor and compute in
its type (torch: differentiable); the arithmetic is the same, so the two agree to rounding.

**One SH basis.** The real, orthonormal spherical harmonics ``Y_i = K_i P_i(d)`` in the usual
order (band l = 0, 1, 2, 3; m = -l..l), where ``P_i`` are the Cartesian polynomials
``1 | y, z, x | xy, yz, 3z^2-1, xz, x^2-y^2 | y(3x^2-y^2), xyz, y(5z^2-1), z(5z^2-3), x(5z^2-1), z(x^2-y^2), x(x^2-3y^2)``
and ``K_i`` their normalisation (:data:`SH_K`). A radiance map ``L`` has coefficients
``L_i = integral L(d) Y_i(d) dd`` (:func:`project_sh`). Two scalings of the same basis are in use,
each a documented conversion rather than a second basis:

* irradiance (the cosine-lobe convolution, Ramamoorthi & Hanrahan 2001): ``E(n) = sum_i A_l L_i Y_i(n)``
  with ``A_l = pi, 2pi/3, pi/4, 0`` per band; :func:`irradiance_basis` gives ``A_l K_i P_i(n)``
  with the constants :data:`SH_C` that the trackers' fitted lighting is expressed in;
* Filament's IBL (``sh`` entry of its KTX files): coefficients ``A_l K_i L_i / pi`` multiplying the
  bare polynomials ``P_i`` give ``E(n) / pi`` (:func:`filament_sh`, :func:`sh_polynomials`).

Specular image-based lighting is the split-sum approximation (Karis 2013): radiance prefiltered
with the GGX lobe of a roughness (:class:`SphereSamples`, :meth:`EnvironmentMap.prefiltered`)
times the pre-integrated BRDF ``(scale, bias)`` of :func:`brdf_lut`, as ``f0 * scale + bias``.

The physically based shading under these lights (Lambert + GGX Cook-Torrance, differentiable; SH
diffuse, split-sum specular over a prefiltered roughness stack with its own LUT, a brute-force
reference) is :mod:`.brdf`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar, Union

import numpy as np
import torch

from ..errors import BadInputError
from .color import reinhard_gamma
from .hdrio import read_hdr_image, write_hdr_image

__all__ = [
    "SH_K", "SH_C", "COSINE_LOBE", "sh_count", "sh_polynomials", "sh_basis", "irradiance_basis", "project_sh", "filament_sh",
    "fibonacci_sphere", "ENVIRONMENTS", "radiance", "environment_sh", "SphereSamples", "brdf_lut", "brdf_lut_approx",
    "equirect_directions", "EnvironmentMap", "CAPTURE", "environment_names", "environment_from_spec", "directional_light",
    "rotate_environment", "parse_light", "SPEC_WIDTH", "sh_rotation_y",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)
Radiance = Callable[[np.ndarray], np.ndarray]  # (N, 3) unit directions -> (N, 3) linear RGB

# ----------------------------------------------------------------------------- the SH basis
#: Normalisation K_i of the real SH per coefficient, bands 0-3 (6 significant digits, the usual tables).
SH_K = (0.282095, 0.488603, 0.488603, 0.488603, 1.092548, 1.092548, 0.315392, 1.092548, 0.546274,
        0.590044, 2.890611, 0.457046, 0.373176, 0.457046, 1.445306, 0.590044)
#: Cosine-lobe convolution A_l per band (band 3 and every odd band above 1 vanish).
COSINE_LOBE = (np.pi, 2 * np.pi / 3, np.pi / 4, 0.0)
#: Ramamoorthi & Hanrahan's irradiance constants A_l K_i (6 digits) for the distinct terms of bands 0-2:
#: 1, (y, z, x), (xy, yz, xz), 3z^2-1, x^2-y^2. The trackers' fitted lighting is in these exact values.
SH_C = (0.886227, 1.023328, 0.858086, 0.247708, 0.429043)
_IRRADIANCE_SCALE = (SH_C[0], SH_C[1], SH_C[1], SH_C[1], SH_C[2], SH_C[2], SH_C[3], SH_C[2], SH_C[4])
_ONES = (1.0,) * 16


def sh_count(bands: int) -> int:
    """Number of coefficients of bands 0..bands-1 (3 bands: 9, 4 bands: 16)."""
    if not 1 <= bands <= 4:
        raise ValueError(f"SH bands must be 1 to 4, got {bands}")
    return bands * bands


def _sh_terms(d: Array, scale: Sequence[float], bands: int) -> Array:
    """(..., bands^2) ``scale[i] * P_i(d)`` for directions (..., 3); scale[i] multiplies first (``c * x * y``)."""
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    c = scale
    terms = [c[0] * (torch.ones_like(x) if isinstance(d, torch.Tensor) else np.ones_like(x))]
    if bands > 1:
        terms += [c[1] * y, c[2] * z, c[3] * x]
    if bands > 2:
        terms += [c[4] * x * y, c[5] * y * z, c[6] * (3 * z * z - 1), c[7] * x * z, c[8] * (x * x - y * y)]
    if bands > 3:
        terms += [c[9] * y * (3 * x * x - y * y), c[10] * x * y * z, c[11] * y * (5 * z * z - 1), c[12] * z * (5 * z * z - 3),
                  c[13] * x * (5 * z * z - 1), c[14] * z * (x * x - y * y), c[15] * x * (x * x - 3 * y * y)]
    return torch.stack(terms, -1) if isinstance(d, torch.Tensor) else np.stack(terms, -1)


def sh_polynomials(d: Array, bands: int = 3) -> Array:
    """(..., bands^2) the bare polynomials P_i of unit directions (..., 3) (Filament's shader uses these)."""
    sh_count(bands)  # validates
    return _sh_terms(d, _ONES, bands)


def sh_basis(d: Array, bands: int = 3) -> Array:
    """(..., bands^2) the orthonormal real SH Y_i = K_i P_i of unit directions (..., 3)."""
    sh_count(bands)  # validates
    return _sh_terms(d, SH_K, bands)


def irradiance_basis(n: Array) -> Array:
    """(..., 9) ``A_l Y_i(n)`` (constants :data:`SH_C`): ``irradiance_basis(n) @ L`` is the irradiance at
    unit normals (..., 3) of radiance with SH coefficients ``L`` (9, C) (bands 0-2: band 3 adds nothing)."""
    return _sh_terms(n, _IRRADIANCE_SCALE, 3)


def project_sh(dirs: np.ndarray, values: np.ndarray, weights: Union[np.ndarray, float], bands: int = 3) -> np.ndarray:
    """(bands^2, C) SH coefficients ``sum_k w_k Y_i(d_k) values_k`` of a function sampled at (N, 3) unit
    directions with (N, C) values and solid angles ``weights`` (N,) or one number (steradians each)."""
    w = np.asarray(weights, np.float64)
    Y = sh_basis(np.asarray(dirs, np.float64), bands)
    return (Y * (w[:, None] if w.ndim else w)).T @ np.asarray(values, np.float64)


def filament_sh(coeffs: np.ndarray) -> np.ndarray:
    """(9, C) radiance SH coefficients -> Filament's irradiance SH: ``sh_polynomials(n) @ out = E(n) / pi``."""
    scale = np.array([COSINE_LOBE[l] / np.pi * SH_K[i] for l in range(3) for i in range(l * l, (l + 1) ** 2)])
    return scale[:, None] * np.asarray(coeffs, np.float64)[:9]


def fibonacci_sphere(n: int) -> np.ndarray:
    """(n, 3) nearly uniform unit directions (each stands for 4 pi / n steradians)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


#: Directions of the fit in :func:`sh_rotation_y` (any 16 in general position make it exact) and its pseudo-inverse.
_FIT_DIRS = fibonacci_sphere(64)
_FIT_PINV = np.linalg.pinv(sh_basis(_FIT_DIRS, 4))  # (16, 64)


def sh_rotation_y(degrees: float, bands: int = 3) -> np.ndarray:
    """(K, K) float64 matrix, K = bands^2: ``sh_rotation_y(a) @ L`` are the SH coefficients (K, C) of the map turned
    ``a`` degrees about +Y when ``L`` (K, C) are those of the unturned map; the turn of :func:`rotate_environment`
    and :func:`radiance` (+: the front, +Z, moves towards +X; the turned map is ``L'(d) = L(R^-1 d)``).

    ``L'_i = integral L(u) Y_i(R u) du = sum_j M_ij L_j`` where ``Y_i(R u) = sum_j M_ij Y_j(u)``. Each band is closed
    under rotation (about +Y its functions pair up as m / -m about the vertical and mix with cos / sin of m times the
    angle), so M is found exactly (to rounding) by least squares on a few directions; the fit costs ~0.1 ms.
    """
    k = sh_count(bands)
    turned = sh_basis(_FIT_DIRS @ _rot_y(float(degrees)).T, 4)  # (64, 16): rows Y(R u)
    return (_FIT_PINV @ turned).T[:k, :k]  # band-diagonal, so the top-left block is the fewer bands' matrix


# ----------------------------------------------------------------------------- the generated maps
def _lobe(d: np.ndarray, centre: tuple[float, float, float], width: float) -> np.ndarray:
    """Smooth light-source lobe: exp((cos angle - 1) / width), 1 at the centre; (N,)."""
    c = np.asarray(centre, np.float64)
    c = c / np.linalg.norm(c)
    return np.exp((d @ c - 1.0) / width)


def _studio(d: np.ndarray) -> np.ndarray:
    # Dark room, big soft key box upper-left-front, dimmer fill on the right, rim light behind-above.
    base = 0.04 + 0.03 * np.clip(d[:, 1], 0, 1)
    key = 9.0 * _lobe(d, (-0.6, 0.5, 0.65), 0.08)
    fill = 2.2 * _lobe(d, (0.8, 0.1, 0.55), 0.12)
    rim = 4.0 * _lobe(d, (0.0, 0.6, -0.8), 0.05)
    rgb = base[:, None] + key[:, None] * [1.0, 0.97, 0.92] + fill[:, None] * [0.85, 0.9, 1.0] + rim[:, None] * [1.0, 1.0, 1.0]
    return rgb


def _sunset(d: np.ndarray) -> np.ndarray:
    y = d[:, 1]
    up = np.clip(y, 0, 1)[:, None]
    horizon = np.exp(-np.abs(y) / 0.12)[:, None]
    sky = (1 - up) * np.array([1.0, 0.55, 0.3]) + up * np.array([0.25, 0.4, 0.8])
    sky = sky * 0.9 + horizon * np.array([1.2, 0.5, 0.2])
    ground = np.array([0.18, 0.12, 0.09]) * (0.6 + 0.4 * horizon)
    rgb = np.where((y >= 0)[:, None], sky, ground)
    sun = 60.0 * _lobe(d, (0.75, 0.12, 0.65), 0.004) + 3.0 * _lobe(d, (0.75, 0.12, 0.65), 0.05)
    return rgb + sun[:, None] * np.array([1.0, 0.62, 0.3])


def _overcast(d: np.ndarray) -> np.ndarray:
    y = d[:, 1]
    # CIE overcast sky: luminance (1 + 2 sin(elevation)) / 3 above the horizon, dim grey ground below.
    sky = 1.4 * (1 + 2 * np.clip(y, 0, 1)) / 3
    ground = 0.25 + 0.05 * y
    lum = np.where(y >= 0, sky, ground)
    return lum[:, None] * np.array([0.95, 0.98, 1.03])


#: name -> analytic radiance of the maps the viewer ships; all linear, roughly unit mean so intensities are comparable.
ENVIRONMENTS: dict[str, Radiance] = {"studio": _studio, "sunset": _sunset, "overcast": _overcast}


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def radiance(name: str, dirs: np.ndarray, rotation_deg: float = 0.0) -> np.ndarray:
    """Radiance (N, 3) of generated map ``name`` rotated ``rotation_deg`` about +Y, for (N, 3) unit dirs."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}; expected one of: {', '.join(ENVIRONMENTS)}")
    # Rotating the environment by R means looking up the unrotated map at R^-1 d.
    local = np.asarray(dirs, np.float64) @ _rot_y(rotation_deg)
    return ENVIRONMENTS[name](local)


def environment_sh(name: str, rotation_deg: float = 0.0, samples: int = 8192) -> np.ndarray:
    """(9, 3) radiance SH coefficients of generated map ``name`` (``samples`` Fibonacci directions)."""
    d = fibonacci_sphere(samples)
    return project_sh(d, radiance(name, d, rotation_deg), 4 * np.pi / samples)


# ----------------------------------------------------------------------------- prefiltered specular
@dataclass
class SphereSamples:
    """Radiance sampled at nearly uniform directions, for prefiltering (the specular half of the split sum).

    ``lookup`` gives the exact radiance, used where a lobe is narrower than the sample spacing.
    """

    lookup: Radiance  #: (N, 3) unit directions -> (N, 3) radiance
    dirs: np.ndarray  #: (S, 3) Fibonacci directions
    values: np.ndarray  #: (S, 3) radiance at ``dirs``

    @classmethod
    def of(cls, lookup: Radiance, count: int = 2048) -> "SphereSamples":
        d = fibonacci_sphere(count)
        return cls(lookup, d, lookup(d))

    @property
    def spacing(self) -> float:
        """Mean angle between neighbouring sample directions, radians."""
        return float(np.sqrt(4 * np.pi / len(self.dirs)))

    def prefiltered(self, dirs: np.ndarray, roughness: float, lobe: str = "ggx") -> np.ndarray:
        """(N, 3) radiance around reflection directions (N, 3), weighted by the lobe of perceptual ``roughness``.

        ``lobe="ggx"``: the GGX distribution with alpha = roughness^2 under the split sum's n = v = r
        assumption (Karis 2013): sample l weighs D(h) (r.l), h the half vector of r and l.
        ``lobe="phong"``: a Phong lobe (r.l)^p with the exponent p = 2 / alpha^2 - 2 usually matched
        to GGX; narrower than GGX's long tail, it is what the viewer's baked IBL files use.
        Roughness 0, or a lobe narrower than the sample spacing, returns the radiance itself.
        """
        d = np.asarray(dirs, np.float64)
        a = max(roughness * roughness, 1e-3)
        if lobe == "phong":
            power = max(2.0 / (a * a) - 2.0, 1.0)
            width = np.sqrt(2.0 / power)
        elif lobe == "ggx":
            width = 2 * a  # about the angle where D(h) falls to 1/4: half-vector angle a, doubled for l
        else:
            raise ValueError(f"unknown lobe {lobe!r}; expected 'ggx' or 'phong'")
        if roughness <= 0 or width < 2 * self.spacing:
            # Lobe narrower than the sample grid: convolving would only alias; the map itself is closer.
            return self.lookup(d)
        c = d @ self.dirs.T  # (N, S) cos angle between r and l
        if lobe == "phong":
            w = np.clip(c, 0, 1) ** power
        else:
            nh2 = np.clip((1 + c) / 2, 0, 1)  # (n.h)^2 with n = r
            w = a * a / (np.pi * (nh2 * (a * a - 1) + 1) ** 2) * np.clip(c, 0, 1)
        return (w @ self.values) / np.maximum(w.sum(1, keepdims=True), 1e-12)


def _hammersley(n: int) -> np.ndarray:
    """(n, 2) Hammersley points in [0, 1)^2 (radical inverse in base 2)."""
    i = np.arange(n, dtype=np.uint32)
    b = i.copy()
    b = ((b << 16) | (b >> 16)) & 0xFFFFFFFF
    b = ((b & 0x55555555) << 1) | ((b & 0xAAAAAAAA) >> 1)
    b = ((b & 0x33333333) << 2) | ((b & 0xCCCCCCCC) >> 2)
    b = ((b & 0x0F0F0F0F) << 4) | ((b & 0xF0F0F0F0) >> 4)
    b = ((b & 0x00FF00FF) << 8) | ((b & 0xFF00FF00) >> 8)
    return np.stack([(i + 0.5) / n, b.astype(np.float64) / 2.0**32], 1)


def brdf_lut(size: int = 32, samples: int = 512) -> np.ndarray:
    """(size, size, 2) pre-integrated GGX BRDF ``(scale, bias)``: rows perceptual roughness, columns n.v,
    both at texel centres ``(i + 0.5) / size``; specular = prefiltered radiance * (f0 * scale + bias).

    Importance-samples the GGX normal distribution with Smith's height-correlated-free G (k = alpha / 2,
    the IBL choice of Karis 2013) and Schlick's Fresnel; ``scale + bias`` is the fraction of energy
    reflected at f0 = 1, so it lies in [0, 1].
    """
    t = (np.arange(size) + 0.5) / size
    rough, nov = np.meshgrid(t, t, indexing="ij")  # (size, size)
    a = (rough * rough)[..., None]  # alpha
    u = _hammersley(samples)  # (S, 2)
    # GGX half vectors around n = +Z; v in the xz plane.
    cos_t = np.sqrt((1 - u[:, 1]) / (1 + (a * a - 1) * u[:, 1]))  # (size, size, S)
    sin_t = np.sqrt(1 - cos_t * cos_t)
    phi = 2 * np.pi * u[:, 0]
    hx, hz = sin_t * np.cos(phi), cos_t
    vx, vz = np.sqrt(1 - nov * nov)[..., None], nov[..., None]
    voh = vx * hx + vz * hz
    nol = 2 * voh * hz - vz  # l = 2 (v.h) h - v, its z
    ok = (nol > 0) & (voh > 0)
    k = a / 2
    g = (vz / (vz * (1 - k) + k)) * (nol / (nol * (1 - k) + k))
    g_vis = np.where(ok, g * voh / np.maximum(hz * vz, 1e-12), 0.0)
    fc = (1 - np.clip(voh, 0, 1)) ** 5
    return np.stack([((1 - fc) * g_vis).mean(-1), (fc * g_vis).mean(-1)], -1)


def brdf_lut_approx(roughness: float, nov: np.ndarray) -> np.ndarray:
    """(N, 2) float32 ``(scale, bias)`` for perceptual ``roughness`` and n.v (N, 1) in (0, 1] by Karis'
    analytic "mobile" fit: cheap, but up to ~0.2 off :func:`brdf_lut` (most at grazing angles); the
    viewer's interactive frames use it, their gains were fitted with it."""
    c0 = np.array([-1.0, -0.0275, -0.572, 0.022], np.float32)
    c1 = np.array([1.0, 0.0425, 1.04, -0.04], np.float32)
    rr = roughness * c0 + c1
    a004 = np.minimum(rr[0] * rr[0], np.exp2(-9.28 * nov)) * rr[0] + rr[1]
    return a004 * np.array([-1.04, 1.04], np.float32) + rr[2:]


# ----------------------------------------------------------------------------- equirectangular maps
def equirect_directions(height: int, width: int) -> np.ndarray:
    """(H, W, 3) unit directions of equirectangular pixel centres: row 0 looks up (+Y), the middle
    column looks at the face's front (+Z), longitude grows towards +X."""
    lon = ((np.arange(width) + 0.5) / width * 2 - 1) * np.pi
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
    lo, la = np.meshgrid(lon, lat)
    return np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], -1)


@dataclass
class EnvironmentMap:
    """An equirectangular environment map: ``pixels`` (H, W, 3) float32 linear radiance, W = 2 H
    (layout of :func:`equirect_directions`).

    ``turned``: when the map is another one turned about +Y (:func:`rotate_environment`, a rotated
    :func:`environment_from_spec`), that map and the angle in degrees; whoever derives costly things from a map (its
    GGX prefiltered stack) can derive them once from the source and turn the result (a rotating light then costs
    nothing per frame). ``pixels`` hold the turned map all the same.
    """

    pixels: np.ndarray
    turned: Optional[tuple["EnvironmentMap", float]] = field(default=None, repr=False, compare=False)

    @classmethod
    def generated(cls, name: str, width: int = 512, rotation_deg: float = 0.0) -> "EnvironmentMap":
        """One of :data:`ENVIRONMENTS` at ``width`` x ``width / 2`` pixels."""
        h = width // 2
        d = equirect_directions(h, width).reshape(-1, 3)
        return cls(radiance(name, d, rotation_deg).reshape(h, width, 3).astype(np.float32))

    @classmethod
    def read(cls, path: Union[str, Path]) -> "EnvironmentMap":
        """From a ``.hdr`` or ``.exr`` file."""
        return cls(read_hdr_image(path))

    def write(self, path: Union[str, Path]) -> None:
        """To a ``.hdr`` (RGBE, ~1 % precision) or ``.exr`` (float32, lossless) file."""
        write_hdr_image(path, self.pixels)

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]

    def solid_angles(self) -> np.ndarray:
        """(H, W) steradians per pixel (exact for the latitude band; they sum to 4 pi)."""
        H, W = self.shape
        edges = (0.5 - np.arange(H + 1) / H) * np.pi
        band = (np.sin(edges[:-1]) - np.sin(edges[1:])) * (2 * np.pi / W)
        return np.repeat(band[:, None], W, 1)

    def sample(self, dirs: np.ndarray) -> np.ndarray:
        """(N, 3) bilinear radiance at (N, 3) unit directions (longitude wraps around)."""
        d = np.asarray(dirs, np.float64)
        H, W = self.shape
        lon = np.arctan2(d[:, 0], d[:, 2])
        lat = np.arcsin(np.clip(d[:, 1], -1, 1))
        x = (lon / np.pi + 1) / 2 * W - 0.5
        y = np.clip((0.5 - lat / np.pi) * H - 0.5, 0, H - 1)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        y1 = np.minimum(y0 + 1, H - 1)
        x0, x1 = x0 % W, (x0 + 1) % W
        p = self.pixels.astype(np.float64)
        top = p[y0, x0] * (1 - fx) + p[y0, x1] * fx
        bot = p[y1, x0] * (1 - fx) + p[y1, x1] * fx
        return top * (1 - fy) + bot * fy

    def sh(self, bands: int = 3) -> np.ndarray:
        """(bands^2, 3) radiance SH coefficients (pixel-exact solid angles)."""
        H, W = self.shape
        return project_sh(equirect_directions(H, W).reshape(-1, 3), self.pixels.reshape(-1, 3), self.solid_angles().reshape(-1), bands)

    def prefiltered(self, roughness: float, width: int = 128, samples: int = 4096, lobe: str = "ggx") -> "EnvironmentMap":
        """The map convolved with the specular lobe of perceptual ``roughness``, at ``width`` pixels."""
        s = SphereSamples.of(self.sample, samples)
        h = width // 2
        d = equirect_directions(h, width).reshape(-1, 3)
        return EnvironmentMap(s.prefiltered(d, roughness, lobe).reshape(h, width, 3).astype(np.float32))

    def preview(self) -> np.ndarray:
        """(H, W, 3) uint8 tone-mapped picture of the map (for UIs and docs)."""
        return (np.clip(reinhard_gamma(self.pixels.astype(np.float64)), 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- environments users name
#: The environment name of the capture's own light (the appearance stage's or the relightable avatar's estimate).
CAPTURE = "capture"
#: Width (pixels) of the maps :func:`environment_from_spec` generates: 1.4-degree pixels, finer than the sunset's sun
#: (~4 degrees) and the directional light's lobe; 512 would cost ~4x the time per map.
SPEC_WIDTH = 256
#: Angular standard deviation of :func:`directional_light`'s lobe, radians (2 degrees: a small softbox far away).
LIGHT_SIGMA = np.deg2rad(2.0)
_HDR_MAGIC = (b"#?RADIANCE", b"#?RGBE")
_EXR_MAGIC = b"\x76\x2f\x31\x01"  # 20000630, little-endian


def environment_names(capture: Optional["EnvironmentMap"] = None) -> tuple[str, ...]:
    """The environments a user can name: the generated ones, plus :data:`CAPTURE` when there is one."""
    return (*ENVIRONMENTS, CAPTURE) if capture is not None else tuple(ENVIRONMENTS)


def directional_light(azimuth_deg: float, elevation_deg: float, intensity: float, rgb: Sequence[float] = (1.0, 1.0, 1.0),
                      width: int = SPEC_WIDTH) -> EnvironmentMap:
    """A small light (a 2-degree lobe, :data:`LIGHT_SIGMA`) and nothing else, as an environment map ``width`` wide.

    Angles in the head frame (the avatar's world frame, in which the tracking camera sits in front of the face on
    +Z): the light comes from ``(sin az cos el, sin el, cos az cos el)``: azimuth 0 from the front (the camera's
    side), +90 from the head's left (+X, the right of the picture), -90 from its right, 180 from behind; elevation
    +90 from above. ``intensity`` 1 gives a surface facing the light the irradiance pi of a uniform sky of radiance 1
    (about the level of the generated maps, which have roughly unit mean radiance); ``rgb`` (3,) its colour, linear.
    """
    h = width // 2
    env = EnvironmentMap(np.zeros((h, width, 3), np.float32))
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    centre = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    d = equirect_directions(h, width)
    lobe = np.exp((d @ centre - 1.0) / LIGHT_SIGMA**2)  # ~ exp(-angle^2 / (2 sigma^2))
    power = float((lobe * env.solid_angles()).sum())
    scale = np.pi * float(intensity) / max(power, 1e-12)  # the lobe integrates to pi * intensity
    env.pixels = (lobe[..., None] * scale * np.asarray(rgb, np.float64)).astype(np.float32)
    return env


def environment_from_spec(spec: Union[str, Path], rotation_deg: float = 0.0, capture: Optional[EnvironmentMap] = None) -> EnvironmentMap:
    """The environment a user names, turned ``rotation_deg`` about the vertical (+Y; + moves a light from the
    front towards the head's left, +X, like a light's azimuth: :func:`directional_light`); a turned map records its
    unturned source (:attr:`EnvironmentMap.turned`).

    ``spec``: one of :data:`ENVIRONMENTS` (generated, :data:`SPEC_WIDTH` wide); ``"capture"`` (the map
    ``capture``); a ``.hdr`` or ``.exr`` equirectangular file (linear radiance, twice as wide as tall, row 0 up,
    the middle column in front of the face: :func:`equirect_directions`); or a directional light
    ``AZ,EL,INTENSITY[,R,G,B]`` (:func:`directional_light`).

    Raises:
        BadInputError: one sentence: an unknown name (listing the valid ones), a missing, unreadable or non-HDR
            file, a map of the wrong shape or with negative radiance, a malformed light, "capture" without one.
    """
    text = str(spec).strip()
    rot = float(rotation_deg)
    if text in ENVIRONMENTS:
        env = EnvironmentMap.generated(text, SPEC_WIDTH, rot)  # the generated maps turn exactly
        return _turned_from(env, lambda: EnvironmentMap.generated(text, SPEC_WIDTH), rot)
    if text == CAPTURE:
        if capture is None:
            raise BadInputError(f"the capture's light is not known here; choose one of: {', '.join(ENVIRONMENTS)}, a .hdr or .exr file, "
                                "or a light AZ,EL,INTENSITY")
        return rotate_environment(capture, rotation_deg)
    path = Path(text)
    if "," in text and not path.is_file():
        az, el, intensity, rgb = parse_light(text)
        return _turned_from(directional_light(az + rot, el, intensity, rgb), lambda: directional_light(az, el, intensity, rgb), rot)
    if path.suffix.lower() in (".hdr", ".exr", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp") or path.exists():
        return rotate_environment(_read_map(path), rotation_deg)
    raise BadInputError(f"unknown environment {text!r}; expected one of: {', '.join((*ENVIRONMENTS, CAPTURE))}, a .hdr or .exr file, "
                        "or a light AZ,EL,INTENSITY[,R,G,B]")


def _turned_from(env: EnvironmentMap, source: Callable[[], EnvironmentMap], rotation_deg: float) -> EnvironmentMap:
    """``env`` (the map ``source()`` makes, turned ``rotation_deg`` exactly) recording so (:attr:`EnvironmentMap.turned`;
    the source is made only for a turn)."""
    if rotation_deg % 360.0 != 0.0:
        env.turned = (source(), rotation_deg)
    return env


def parse_light(text: str) -> tuple[float, float, float, tuple[float, float, float]]:
    """``AZ,EL,INTENSITY[,R,G,B]`` -> (azimuth, elevation, intensity, rgb) for :func:`directional_light`; one
    sentence when malformed."""
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    ok = len(v) in (3, 6) and all(np.isfinite(v)) and -90 <= v[1] <= 90 and v[2] >= 0 and min(v[3:] or [0]) >= 0
    if not ok:
        raise BadInputError(f"a light is AZ,EL,INTENSITY[,R,G,B]: azimuth and elevation (-90..90) in degrees, intensity and colour >= 0 "
                            f"(e.g. 90,20,3 or 90,20,3,1,0.8,0.6), got {text!r}")
    rgb = (v[3], v[4], v[5]) if len(v) == 6 else (1.0, 1.0, 1.0)
    return v[0], v[1], v[2], rgb


def _read_map(path: Path) -> EnvironmentMap:
    """An equirectangular map from a ``.hdr``/``.exr`` file; one sentence for anything else."""
    if not path.is_file():
        raise BadInputError(f"{path}: no such environment map file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise BadInputError(f"{path}: the environment map cannot be read ({e.strerror or e})") from None
    if not (head.startswith(_HDR_MAGIC) or head.startswith(_EXR_MAGIC)):
        raise BadInputError(f"{path} is not an HDR image: an environment map is linear radiance in a Radiance .hdr or OpenEXR .exr file "
                            "(a PNG or JPEG holds display colours, not light)")
    pixels = read_hdr_image(path)
    H, W = pixels.shape[:2]
    if W != 2 * H:
        raise BadInputError(f"{path} is {W}x{H} pixels; an environment map is an equirectangular image twice as wide as it is tall "
                            "(e.g. 1024x512)")
    if not np.isfinite(pixels).all() or pixels.min() < 0:
        raise BadInputError(f"{path} holds negative or non-finite values; an environment map holds light (radiance >= 0)")
    return EnvironmentMap(np.ascontiguousarray(pixels, np.float32))


def rotate_environment(env: EnvironmentMap, rotation_deg: float, width: Optional[int] = None) -> EnvironmentMap:
    """``env`` turned ``rotation_deg`` about +Y (+: the front towards +X, as :func:`radiance` turns the generated maps),
    at ``width`` pixels when given (resampled bilinearly), else its own size (its columns shifted, interpolated
    linearly between two columns for a fractional shift: a turn about +Y keeps every row). The result records
    the map it was turned from (:attr:`EnvironmentMap.turned`; ``env``'s own source when it was turned itself)."""
    H, W = env.shape
    deg = float(rotation_deg)
    if deg % 360.0 == 0.0 and width in (None, W):
        return env
    source, before = env.turned if env.turned is not None else (env, 0.0)
    if width in (None, W):
        pixels = _shift_columns(env.pixels, deg / 360.0 * W)
    else:
        H, W = int(width) // 2, int(width)
        d = equirect_directions(H, W).reshape(-1, 3) @ _rot_y(deg)  # looked up at R^-1 d
        pixels = env.sample(d).reshape(H, W, 3).astype(np.float32)
    return EnvironmentMap(pixels, turned=(source, before + deg))


def _shift_columns(pixels: np.ndarray, shift: float) -> np.ndarray:
    """(H, W, C) float32 equirectangular ``pixels`` moved ``shift`` columns towards +X (longitude wraps): column j
    of the result is the source at column ``j - shift``, linear between its two neighbours (:meth:`EnvironmentMap.sample`'s
    bilinear lookup on the same grid, whose rows fall on texel centres)."""
    k = int(np.floor(shift))
    f = np.float32(shift - k)
    out = np.roll(pixels, k, axis=1).astype(np.float32)
    if f > 0:
        out = out * (1 - f) + np.roll(pixels, k + 1, axis=1) * f
    return out

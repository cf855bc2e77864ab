"""Procedural environment lights (studio, sunset, overcast) baked into Filament IBL files.

Each map is an analytic radiance function ``L(direction) -> linear RGB`` (directions are unit
vectors in the head frame: +Y up, the face looks towards +Z). From it we bake what Open3D's
Filament renderer loads with ``Scene.set_indirect_light(prefix)``:

* ``<prefix>_ibl.ktx``: a KTX1 cubemap (R11F_G11F_B10F) with prefiltered specular mips, plus the
  9 irradiance spherical-harmonics coefficients (pre-convolved with the cosine lobe and divided by
  pi, so the shader's ``sum sh_i * P_i(n)`` is irradiance / pi) in the ``sh`` key-value entry;
* ``<prefix>_skybox.ktx``: a single-mip cubemap shown as background.

We generate these ourselves (no third-party HDR files), cached by name + rotation, so a rotation
slider only re-bakes a small cubemap (~0.1 s).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import numpy as np

from ..paths import cache_dir

__all__ = ["ENVIRONMENTS", "radiance", "irradiance_sh", "bake_environment", "equirect_preview", "cube_directions"]

Radiance = Callable[[np.ndarray], np.ndarray]  # (N, 3) unit directions -> (N, 3) linear RGB


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


#: name -> analytic radiance; all linear, roughly unit mean so intensities are comparable.
ENVIRONMENTS: dict[str, Radiance] = {"studio": _studio, "sunset": _sunset, "overcast": _overcast}


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def radiance(name: str, dirs: np.ndarray, rotation_deg: float = 0.0) -> np.ndarray:
    """Radiance (N, 3) of environment ``name`` rotated ``rotation_deg`` about +Y, for (N, 3) unit dirs."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}; expected one of: {', '.join(ENVIRONMENTS)}")
    # Rotating the environment by R means looking up the unrotated map at R^-1 d.
    local = np.asarray(dirs, np.float64) @ _rot_y(rotation_deg)
    return ENVIRONMENTS[name](local)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


# Real SH normalisation K_i and cosine-lobe convolution A_l per coefficient (bands 0, 1, 2).
_SH_K = np.array([0.282095, 0.488603, 0.488603, 0.488603, 1.092548, 1.092548, 0.315392, 1.092548, 0.546274])
_SH_A = np.array([np.pi] + [2 * np.pi / 3] * 3 + [np.pi / 4] * 5)


def _sh_poly(d: np.ndarray) -> np.ndarray:
    """(N, 9) the polynomials Filament's shader multiplies its 9 SH coefficients with."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.stack([np.ones_like(x), y, z, x, y * x, y * z, 3 * z * z - 1, z * x, x * x - y * y], 1)


def irradiance_sh(name: str, rotation_deg: float = 0.0, samples: int = 8192) -> np.ndarray:
    """(9, 3) Filament-ready SH: irradiance(n) / pi = sum_i sh[i] * P_i(n) (P_i from ``_sh_poly``)."""
    d = _fibonacci_sphere(samples)
    L = radiance(name, d, rotation_deg)
    proj = (4 * np.pi / samples) * _sh_poly(d).T @ L  # (9, 3): integral of L * P_i
    return (_SH_A / np.pi * _SH_K**2)[:, None] * proj


def cube_directions(n: int) -> np.ndarray:
    """(6, n, n, 3) unit directions of cubemap texel centres, faces +X,-X,+Y,-Y,+Z,-Z (GL layout)."""
    c = (np.arange(n) + 0.5) / n * 2 - 1
    u, v = np.meshgrid(c, c)  # u: column (left->right), v: row (top->bottom)
    one = np.ones_like(u)
    faces = [
        np.stack([one, -v, -u], -1),
        np.stack([-one, -v, u], -1),
        np.stack([u, one, v], -1),
        np.stack([u, -one, -v], -1),
        np.stack([u, -v, one], -1),
        np.stack([-u, -v, -one], -1),
    ]
    d = np.stack(faces)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _prefiltered(name: str, rotation_deg: float, n: int, roughness: float, samples: np.ndarray, L: np.ndarray) -> np.ndarray:
    """(6, n, n, 3) radiance convolved with a GGX-like lobe for ``roughness`` (0 = the map itself)."""
    d = cube_directions(n).reshape(-1, 3)
    if roughness <= 0:
        return radiance(name, d, rotation_deg).reshape(6, n, n, 3)
    # Phong exponent matching GGX roughness a (a = roughness^2): 2 / a^2 - 2 (the usual mapping).
    a = max(roughness * roughness, 1e-3)
    power = max(2.0 / (a * a) - 2.0, 1.0)
    spacing = np.sqrt(4 * np.pi / len(samples))  # mean angle between sample directions
    if np.sqrt(2.0 / power) < 2 * spacing:
        # Lobe narrower than the sample grid: convolving would only alias; the map itself is closer.
        return radiance(name, d, rotation_deg).reshape(6, n, n, 3)
    w = np.clip(d @ samples.T, 0, 1) ** power  # (n*n*6, S)
    out = (w @ L) / np.maximum(w.sum(1, keepdims=True), 1e-12)
    return out.reshape(6, n, n, 3)


def _pack_r11g11b10(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) non-negative float -> (...) uint32 GL_R11F_G11F_B10F (via float16 bit patterns)."""
    h = np.clip(rgb, 0, 6.0e4).astype(np.float16).view(np.uint16).astype(np.uint32)
    r = (h[..., 0] >> 4) & 0x7FF  # 5-bit exponent + top 6 mantissa bits
    g = (h[..., 1] >> 4) & 0x7FF
    b = (h[..., 2] >> 5) & 0x3FF  # 5-bit exponent + top 5 mantissa bits
    return r | (g << 11) | (b << 22)


def _write_ktx_cubemap(path: Path, mips: list[np.ndarray], sh: np.ndarray | None) -> None:
    """Write a KTX1 cubemap: ``mips`` is a list of (6, n, n, 3) float arrays (n halving)."""
    # Header values exactly as Filament's own cmgen writes them (its KTX reader keys on these).
    GL_R11F_G11F_B10F, GL_RGB = 0x8C3A, 0x1907
    kv = b""
    if sh is not None:
        text = "".join(f"{c[0]:.6g} {c[1]:.6g} {c[2]:.6g}\n" for c in sh).encode() + b"\0"
        entry = b"sh\0" + text
        pad = (-len(entry)) % 4
        kv = struct.pack("<I", len(entry)) + entry + b"\0" * pad
    n = mips[0].shape[1]
    header = struct.pack(
        "<13I", 0x04030201, GL_R11F_G11F_B10F, 1, GL_RGB, GL_R11F_G11F_B10F, GL_R11F_G11F_B10F, n, n, 0, 0, 6, len(mips), len(kv)
    )
    parts = [b"\xabKTX 11\xbb\r\n\x1a\n", header, kv]
    for level in mips:
        packed = _pack_r11g11b10(level.astype(np.float32))  # (6, m, m); 4-byte texels keep rows aligned
        parts.append(struct.pack("<I", packed[0].nbytes))
        parts.extend(packed[f].tobytes() for f in range(6))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(path)


def bake_environment(name: str, rotation_deg: float = 0.0, size: int = 64, levels: int = 5, sky_size: int = 128) -> str:
    """Bake (or reuse) the IBL + skybox KTX files; return the prefix for ``Scene.set_indirect_light``."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}; expected one of: {', '.join(ENVIRONMENTS)}")
    rot = round(float(rotation_deg) % 360.0, 1)
    d = cache_dir("viewer/ibl")
    prefix = d / f"{name}_r{rot:05.1f}_s{size}_v3"
    ibl, sky = Path(f"{prefix}_ibl.ktx"), Path(f"{prefix}_skybox.ktx")
    if ibl.is_file() and sky.is_file():
        return str(prefix)
    samples = _fibonacci_sphere(2048)
    L = radiance(name, samples, rot)
    mips = []
    for k in range(levels):
        n = max(size >> k, 1)
        # Filament maps perceptual roughness r to lod = (levels - 1) * r (roughly), so level k
        # holds the map prefiltered for roughness k / (levels - 1).
        mips.append(_prefiltered(name, rot, n, k / max(levels - 1, 1), samples, L))
    _write_ktx_cubemap(ibl, mips, irradiance_sh(name, rot))
    _write_ktx_cubemap(sky, [_prefiltered(name, rot, sky_size, 0.0, samples, L)], None)
    return str(prefix)


def equirect_preview(name: str, width: int = 256, rotation_deg: float = 0.0) -> np.ndarray:
    """(width/2, width, 3) uint8 tone-mapped equirectangular picture of a map (for UIs and docs)."""
    h = width // 2
    lon = ((np.arange(width) + 0.5) / width * 2 - 1) * np.pi  # 0 = +Z (in front of the face)
    lat = (0.5 - (np.arange(h) + 0.5) / h) * np.pi
    lo, la = np.meshgrid(lon, lat)
    d = np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], -1).reshape(-1, 3)
    L = radiance(name, d, rotation_deg).reshape(h, width, 3)
    img = (L / (1 + L)) ** (1 / 2.2)  # Reinhard + gamma: only for display
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)

"""The generated environment lights (:data:`avatar3d.render.lighting.ENVIRONMENTS`) baked into Filament IBL files.

From each map's analytic radiance (:func:`avatar3d.render.lighting.radiance`) we bake what Open3D's
Filament renderer loads with ``Scene.set_indirect_light(prefix)``:

* ``<prefix>_ibl.ktx``: a KTX1 cubemap (R11F_G11F_B10F) with prefiltered specular mips, plus the
  9 irradiance spherical-harmonics coefficients (pre-convolved with the cosine lobe and divided by
  pi, so the shader's ``sum sh_i * P_i(n)`` is irradiance / pi) in the ``sh`` key-value entry;
* ``<prefix>_skybox.ktx``: a single-mip cubemap shown as background.

We generate these ourselves (no third-party HDR files), cached by name + rotation, so a rotation
slider only re-bakes a small cubemap (~0.1 s).

:data:`CAPTURE` names a fourth map: the capture's light as the appearance stage estimated it
(``appearance/environment.hdr``), passed as ``capture=`` (an :class:`~avatar3d.render.lighting.EnvironmentMap`),
scaled to unit mean radiance like the generated maps (its absolute level is the capture's exposure; the
intensity slider sets the level) and cached by a hash of its pixels.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.atomic import atomic_path
from ..errors import BadInputError
from ..paths import cache_dir
from ..render.lighting import CAPTURE, EnvironmentMap, SphereSamples, environment_names, environment_sh, fibonacci_sphere, filament_sh, project_sh, radiance

__all__ = ["irradiance_sh", "bake_environment", "cube_directions", "CAPTURE", "environment_names"]

def _check(name: str, capture: Optional[EnvironmentMap]) -> None:
    if name not in environment_names(capture):
        extra = "" if capture is not None or name != CAPTURE else " (the capture's light needs the appearance stage's maps)"
        raise BadInputError(f"unknown environment {name!r}{extra}; expected one of: {', '.join(environment_names(capture))}")


def _capture_radiance(env: EnvironmentMap, rotation_deg: float) -> Callable[[np.ndarray], np.ndarray]:
    """(N, 3) dirs -> (N, 3) radiance of ``env`` at unit mean luminance, rotated ``rotation_deg`` about +Y."""
    w = env.solid_angles()[..., None]
    mean = float((env.pixels * w).sum((0, 1)) @ np.array([0.2126, 0.7152, 0.0722]) / (4 * np.pi))
    gain = 1.0 / mean if mean > 1e-12 else 1.0
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    # Rotating the environment by R means looking up the unrotated map at R^-1 d (as lighting.radiance does).
    return lambda d: env.sample(np.asarray(d, np.float64) @ rot) * gain


def _radiance(name: str, rotation_deg: float, capture: Optional[EnvironmentMap]) -> Callable[[np.ndarray], np.ndarray]:
    if name == CAPTURE and capture is not None:
        return _capture_radiance(capture, rotation_deg)
    return lambda d: radiance(name, d, rotation_deg)


def irradiance_sh(name: str, rotation_deg: float = 0.0, samples: int = 8192, capture: Optional[EnvironmentMap] = None) -> np.ndarray:
    """(9, 3) Filament-ready SH of map ``name``: irradiance(n) / pi = ``sh_polynomials(n) @ sh``
    (``capture``: the map :data:`CAPTURE` names)."""
    _check(name, capture)
    if name != CAPTURE:
        return filament_sh(environment_sh(name, rotation_deg, samples))
    d = fibonacci_sphere(samples)
    return filament_sh(project_sh(d, _capture_radiance(capture, rotation_deg)(d), 4 * np.pi / samples))


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


def _prefiltered_cube(samples: SphereSamples, n: int, roughness: float) -> np.ndarray:
    """(6, n, n, 3) cubemap of the radiance prefiltered for ``roughness`` (0 = the map itself).

    The Phong lobe matched to GGX, which these files have always been baked with (see
    :meth:`~avatar3d.render.lighting.SphereSamples.prefiltered`).
    """
    return samples.prefiltered(cube_directions(n).reshape(-1, 3), roughness, lobe="phong").reshape(6, n, n, 3)


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
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(parts))


def bake_environment(name: str, rotation_deg: float = 0.0, size: int = 64, levels: int = 5, sky_size: int = 128,
                     capture: Optional[EnvironmentMap] = None) -> str:
    """Bake (or reuse) the IBL + skybox KTX files; return the prefix for ``Scene.set_indirect_light``
    (``capture``: the map :data:`CAPTURE` names)."""
    _check(name, capture)
    rot = round(float(rotation_deg) % 360.0, 1)
    d = cache_dir("viewer/ibl")
    tag = name
    if name == CAPTURE:  # one capture's light is not another's: key by the pixels
        tag = f"{name}_{hashlib.sha1(np.ascontiguousarray(capture.pixels, np.float32).tobytes()).hexdigest()[:12]}"
    prefix = d / f"{tag}_r{rot:05.1f}_s{size}_v3"
    ibl, sky = Path(f"{prefix}_ibl.ktx"), Path(f"{prefix}_skybox.ktx")
    if ibl.is_file() and sky.is_file():
        return str(prefix)
    samples = SphereSamples.of(_radiance(name, rot, capture), 2048)
    mips = []
    for k in range(levels):
        # Filament maps perceptual roughness r to lod = (levels - 1) * r (roughly), so level k
        # holds the map prefiltered for roughness k / (levels - 1).
        mips.append(_prefiltered_cube(samples, max(size >> k, 1), k / max(levels - 1, 1)))
    _write_ktx_cubemap(ibl, mips, irradiance_sh(name, rot, capture=capture))
    _write_ktx_cubemap(sky, [_prefiltered_cube(samples, sky_size, 0.0)], None)
    return str(prefix)

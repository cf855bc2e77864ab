"""Interactive frames: the lit look computed per vertex on the CPU, drawn unlit by Filament.

On Mesa's llvmpipe the cost of a viewer frame is Filament's per-pixel work: the ``defaultLit``
shader (~60 % of a 940x820 frame), post-processing (tone mapping, dithering; ~25 %) and SSAO.
While a slider moves we instead evaluate the same lighting (sun: Lambert + GGX specular; the
environment: its irradiance spherical harmonics + a split-sum specular) at the ~13k vertices in
numpy, apply Filament's tone curve and sRGB encoding ourselves, and draw the mesh with the
``defaultUnlit`` shader and post-processing off: Filament then only interpolates a colour and
multiplies a texture. Only triangles facing the camera are submitted (``defaultUnlit`` is
double-sided, so back faces would otherwise be shaded too).

Texture detail: the unlit shader multiplies the vertex colour by the albedo texture, which Filament
decodes from sRGB to linear. We upload a re-encoded copy so the shader sees the *sRGB* albedo, and
divide each vertex's display colour by the sRGB albedo around that vertex: the product then equals
the display colour at the vertex and keeps the texture's relative detail in display space.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..geometry import face_normals_np
from ..render.color import display_curve, srgb_decode, srgb_encode
from ..render.lighting import brdf_lut_approx, sh_polynomials

__all__ = ["VertexLighting", "front_facing", "EXPOSURE"]

# Open3D's default camera exposure (f/16, 1/125 s, ISO 100): EV100 = log2(16^2 * 125), and Filament's
# exposure = 1 / (1.2 * 2^EV100). Lit materials are multiplied by it; unlit ones are not.
EXPOSURE = 1.0 / (1.2 * 16.0**2 * 125.0)
# Our per-vertex estimate of what ``defaultLit`` outputs comes out ~2.4x too bright against Filament's
# own frames (measured on the built-in head under all three environments and several sun angles, see
# tests/test_viewer_fast.py checks it); one global factor, fitted on those frames, brings the mean difference near zero.
LIT_GAIN = 0.42
# The SH stand-in for the prefiltered environment is broader and dimmer than Filament's cubemap
# at roughness 0.55 (it misses the key lights' reflections); fitted on the same frames as LIT_GAIN.
IBL_SPEC_GAIN = 3.0
# Texture of interactive frames: llvmpipe samples a 1024^2 albedo ~1.5x slower than the whole rest
# of an unlit frame (cache misses); the head spans at most ~800 pixels of the view, and interactive
# frames last only while a slider moves.
TEXTURE_SIZE = 512
SKIN_ROUGHNESS = 0.55  # perceptual roughness of the viewer's skin material
SKIN_REFLECTANCE = 0.35  # Filament reflectance: f0 = 0.16 * r^2 (about 2 %)

def _shrink(a: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 box-filtered down by a power of two until its larger side is <= ``size``."""
    while max(a.shape[:2]) > size and min(a.shape[:2]) >= 2:
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3)).round().astype(np.uint8)
    return a


def front_facing(pos: np.ndarray, faces: np.ndarray, eye: np.ndarray, normals: Optional[np.ndarray] = None) -> np.ndarray:
    """(F,) bool: triangles whose front (counter-clockwise) side faces the camera at ``eye`` (3,).

    With vertex ``normals`` (R, 3) a triangle is also kept when the smooth surface around it faces
    the camera: a few triangles of real meshes are wound the wrong way, and the full-quality
    (double-sided) material draws them, so culling them would punch holes.
    """
    tri = pos[faces]
    to_eye = eye[None] - tri[:, 0]
    fn = face_normals_np(pos, faces, normalize=False)
    keep = np.einsum("fi,fi->f", to_eye, fn) > 0
    if normals is not None:  # only the culled ones need the second test
        back = np.flatnonzero(~keep)
        nb = normals[faces[back, 0]] + normals[faces[back, 1]] + normals[faces[back, 2]]
        keep[back] = np.einsum("fi,fi->f", to_eye[back], nb) > 0
    return keep


class VertexLighting:
    """Per-vertex colours that reproduce the ``defaultLit`` look through ``defaultUnlit``.

    ``albedo`` (H, W, 3) uint8 sRGB texture and ``uvs`` (R, 2) render-vertex UVs (origin bottom-left),
    or None and a constant linear ``base_color`` (3,).
    """

    def __init__(self, albedo: Optional[np.ndarray], uvs: Optional[np.ndarray], base_color=(0.78, 0.6, 0.5),
                 roughness: float = SKIN_ROUGHNESS, reflectance: float = SKIN_REFLECTANCE,
                 vertex_material: Optional[tuple[np.ndarray, np.ndarray]] = None):
        """``vertex_material``: (R,) roughness and (R,) f0 per render vertex (the appearance stage's maps,
        :meth:`.materials.SurfaceMaps.vertex_values`) instead of the constant ``roughness`` / ``reflectance``."""
        self.roughness: float | np.ndarray = float(roughness)  #: perceptual roughness, or (R, 1) per vertex
        self.f0: float | np.ndarray = 0.16 * float(reflectance) ** 2  #: f0 (Filament: 0.16 r^2), or (R, 1) per vertex
        if vertex_material is not None:
            self.roughness = np.asarray(vertex_material[0], np.float32).reshape(-1, 1)
            self.f0 = np.asarray(vertex_material[1], np.float32).reshape(-1, 1)
        if albedo is not None and uvs is not None:
            a = np.asarray(albedo[..., :3], np.uint8)
            # The shader decodes sRGB -> linear; feed it encode(sRGB / 255) so it reads the sRGB value.
            lut = np.round(srgb_encode(np.arange(256) / 255.0) * 255).astype(np.uint8)
            #: (h, w, 3) uint8 sRGB albedo at the interactive frames' size (:mod:`.softview` samples it as is)
            self.texture_srgb: Optional[np.ndarray] = _shrink(a, TEXTURE_SIZE)
            self.texture: Optional[np.ndarray] = np.ascontiguousarray(lut[self.texture_srgb])
            self.vertex_srgb = self._vertex_albedo(a, uvs)
        else:
            self.texture_srgb = self.texture = None
            self.vertex_srgb = np.broadcast_to(srgb_encode(np.asarray(base_color, np.float64)), (1, 3)).copy()
        self.vertex_srgb = np.maximum(self.vertex_srgb, 1e-3).astype(np.float32)
        self.vertex_linear = srgb_decode(self.vertex_srgb).astype(np.float32)

    @staticmethod
    def _vertex_albedo(a: np.ndarray, uvs: np.ndarray) -> np.ndarray:
        """(R, 3) sRGB albedo around each vertex: the texture box-filtered to ~256 texels (about a triangle), sampled bilinearly."""
        H, W = a.shape[:2]
        k = max(1, min(H, W) // 256)
        h, w = H // k, W // k
        small = a[: h * k, : w * k].reshape(h, k, w, k, 3).astype(np.float64).mean((1, 3)) / 255.0
        x = np.clip(uvs[:, 0] * w - 0.5, 0, w - 1)
        y = np.clip((1.0 - uvs[:, 1]) * h - 0.5, 0, h - 1)  # v = 0 is the image's bottom row
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        top = small[y0, x0] * (1 - fx) + small[y0, x1] * fx
        bot = small[y1, x0] * (1 - fx) + small[y1, x1] * fx
        return top * (1 - fy) + bot * fy

    def colors(self, pos: np.ndarray, nrm: np.ndarray, eye: np.ndarray, lighting, sh: Optional[np.ndarray],
               sun_lux: float, ibl_scale: float) -> np.ndarray:
        """(R, 3) float32 vertex colours for render-vertex positions/normals (R, 3), camera ``eye`` (3,).

        ``lighting`` is a :class:`~avatar3d.viewer.scene.Lighting`; ``sh`` (9, 3) the environment's
        irradiance SH (irradiance / pi) or None when the environment light is off.
        """
        n = np.asarray(nrm, np.float32)
        v = np.asarray(eye, np.float32)[None] - np.asarray(pos, np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
        nov = np.clip(np.einsum("ri,ri->r", n, v), 1e-4, 1.0)[:, None]
        a_lin = self.vertex_linear
        alpha = self.roughness**2
        radiance = np.zeros((len(n), 3), np.float32)
        E = (sun_lux * max(lighting.intensity, 0.0) * np.asarray(lighting.color, np.float64)).astype(np.float32)
        if E.max() > 0:
            l = -np.asarray(lighting.direction(), np.float32)
            nol = np.clip(n @ l, 0.0, 1.0)[:, None]
            h = v + l[None]
            h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
            noh = np.clip(np.einsum("ri,ri->r", n, h), 0.0, 1.0)[:, None]
            voh = np.clip(h @ l, 0.0, 1.0)[:, None]
            d = alpha**2 / (np.pi * (noh**2 * (alpha**2 - 1.0) + 1.0) ** 2)
            vis = 0.5 / (nol * np.sqrt(nov**2 * (1 - alpha**2) + alpha**2) + nov * np.sqrt(nol**2 * (1 - alpha**2) + alpha**2) + 1e-9)
            fres = self.f0 + (1 - self.f0) * (1 - voh) ** 5
            radiance += (a_lin / np.pi + d * vis * fres) * nol * E[None]
        if sh is not None and lighting.env_intensity > 0:
            k = ibl_scale * lighting.env_intensity
            sh = np.asarray(sh, np.float32)
            irr = np.maximum(sh_polynomials(n) @ sh, 0.0)  # irradiance / pi (Filament's SH, see lighting.filament_sh)
            radiance += a_lin * irr * k
            # Split-sum specular: the environment blurred to a cosine lobe around the reflection
            # (roughness 0.55 is broad) times Karis' analytic fit of the pre-integrated BRDF.
            r = 2 * nov * n - v
            env = np.maximum(sh_polynomials(r) @ sh, 0.0)
            ab = brdf_lut_approx(self.roughness, nov) if np.ndim(self.roughness) == 0 else _lut_per_vertex(self.roughness, nov)
            radiance += env * (self.f0 * ab[:, :1] + ab[:, 1:2]) * k * IBL_SPEC_GAIN
        display = display_curve(EXPOSURE * LIT_GAIN * radiance)
        return np.ascontiguousarray(display / self.vertex_srgb, np.float32)


def _lut_per_vertex(roughness: np.ndarray, nov: np.ndarray) -> np.ndarray:
    """(R, 2) ``(scale, bias)`` of :func:`~avatar3d.render.lighting.brdf_lut_approx` (Karis' fit, same
    constants) for per-vertex roughness (R, 1) and n.v (R, 1)."""
    c0 = np.array([-1.0, -0.0275, -0.572, 0.022], np.float32)
    c1 = np.array([1.0, 0.0425, 1.04, -0.04], np.float32)
    rr = roughness * c0 + c1  # (R, 4)
    a004 = np.minimum(rr[:, :1] * rr[:, :1], np.exp2(-9.28 * nov)) * rr[:, :1] + rr[:, 1:2]
    return a004 * np.array([-1.04, 1.04], np.float32) + rr[:, 2:]

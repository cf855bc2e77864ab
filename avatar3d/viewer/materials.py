"""The appearance stage's PBR maps (``TRACK_DIR/appearance/``) as the viewer's textures.

:class:`SurfaceMaps` turns an :class:`~avatar3d.appearance.maps.AppearanceMaps` into what Open3D's
Filament materials and the interactive frames read:

* shaded: ``defaultLit`` with the albedo (sRGB), roughness (linear, perceptual), reflectance and the
  normal map. Filament's *reflectance* ``r`` gives ``f0 = 0.16 r^2``, ours ``f0 = 0.08 specular``
  (:data:`avatar3d.render.brdf.F0_PER_SPECULAR`), so ``r = sqrt(specular / 2)``; Open3D multiplies each map
  by the material's scalar (set to 1, measured). The normal map is re-expressed per pose in the tangent
  frames Filament builds from normals alone (:class:`WorldNormals`), since Open3D passes no UV tangents.
* display modes ``albedo`` / ``roughness`` / ``specular`` / ``normals``: the map drawn unlit with
  post-processing off and white vertex colours (Open3D's default is 0.5 grey), so a screenshot's pixel is
  the map's value (albedo's sRGB code, roughness, specular intensity, 0.5 n + 0.5 of the world-space
  normal including the map's detail) x 255. The unlit shader decodes its texture from sRGB, so the
  uploaded texture is the value sRGB-*encoded*.
* interactive frames (:mod:`.fastshade`): roughness and f0 per render vertex (the maps box-filtered
  to about a triangle and sampled at the vertex UVs); the normal map's detail is per pixel only.

Images are R x R, row 0 = top of the UV layout (v = 1), as the model's albedo texture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import BadInputError
from ..render.brdf import F0_PER_SPECULAR
from ..render.color import srgb_encode

__all__ = ["SurfaceMaps", "WorldNormals", "load_surface_maps", "sample_bilinear", "frisvad_basis"]

#: Largest texture side the viewer uploads (llvmpipe samples 2048^2 maps slowly; the head spans < 1000 px).
MAX_TEXTURE = 1024
_FILAMENT_F0_PER_R2 = 0.16


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


_SRGB_TABLE = _u8(srgb_encode(np.linspace(0.0, 1.0, 4096)))  #: value in [0, 1] (4096 steps) -> 8-bit sRGB code


def _shrink(a: np.ndarray, size: int) -> np.ndarray:
    """(H, W, ...) float box-filtered down by a power of two until its larger side is <= ``size``."""
    a = np.asarray(a, np.float32)
    while max(a.shape[:2]) > size and min(a.shape[:2]) >= 2:
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].reshape(h // 2, 2, w // 2, 2, *a.shape[2:]).mean((1, 3))
    return a


def sample_bilinear(img: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """(N, C) bilinear samples of (H, W, C) ``img`` (row 0 = v 1) at (N, 2) ``uvs`` (origin bottom-left)."""
    h, w = img.shape[:2]
    x = np.clip(uvs[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uvs[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bot * fy


class SurfaceMaps:
    """PBR maps prepared for the viewer (see the module docstring).

    Attributes (R <= :data:`MAX_TEXTURE`):
        albedo: (R, R, 3) uint8 sRGB albedo.
        roughness: (R, R) float32 perceptual roughness; specular: (R, R) float32 intensity (f0 = 0.08 s);
        normal: (R, R, 3) float32 unit tangent-space normals (x along +u, y along +v).
        ior: the material's index of refraction; model: the head model's name the maps were made for.
    """

    def __init__(self, maps, folder: Optional[Path] = None):
        self.folder = folder
        self.model = str(maps.model).partition("=")[0].strip().lower()
        self.ior = float(maps.ior)
        albedo = _shrink(np.clip(maps.albedo, 0, 1), MAX_TEXTURE)
        self.albedo = _u8(srgb_encode(albedo))
        self.roughness = _shrink(np.clip(maps.roughness, 0, 1), MAX_TEXTURE)
        self.specular = _shrink(np.clip(maps.specular, 0, 1), MAX_TEXTURE)
        n = _shrink(maps.normal, MAX_TEXTURE)
        self.normal = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        self.environment = maps.environment_map(256)  #: the capture light (:class:`~avatar3d.render.lighting.EnvironmentMap`)

    # ------------------------------------------------------------------ Filament textures
    def roughness_image(self) -> np.ndarray:
        """(R, R) uint8 linear roughness (Filament's ``roughnessMap``, read as is)."""
        return _u8(self.roughness)

    def reflectance_image(self) -> np.ndarray:
        """(R, R) uint8 Filament reflectance ``sqrt(f0 / 0.16)`` with ``f0 = 0.08 specular``."""
        return _u8(np.sqrt(F0_PER_SPECULAR * self.specular / _FILAMENT_F0_PER_R2))

    @staticmethod
    def display_image(value: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 texture that the unlit shader (sRGB decode, no post-processing) shows as ``value`` x 255;
        ``value`` (H, W) grey or (H, W, 3) in [0, 1]."""
        v = np.asarray(value, np.float32)
        if v.ndim == 2:
            v = np.repeat(v[..., None], 3, -1)
        # A 4096-entry table instead of a power per texel (the normals display redoes this per pose).
        idx = np.rint(np.clip(v, 0.0, 1.0) * (len(_SRGB_TABLE) - 1)).astype(np.int32)
        return np.ascontiguousarray(_SRGB_TABLE[idx])

    # ------------------------------------------------------------------ interactive frames
    def vertex_values(self, uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) roughness and (N,) f0 around each render vertex at (N, 2) ``uvs``: the maps box-filtered to
        ~256 texels (about a triangle of the built-in head) and sampled bilinearly."""
        stack = np.stack([self.roughness, self.specular], -1)
        small = _shrink(stack, 256)
        rs = sample_bilinear(small.astype(np.float64), np.asarray(uvs, np.float64))
        return rs[:, 0].astype(np.float32), (F0_PER_SPECULAR * rs[:, 1]).astype(np.float32)


class WorldNormals:
    """The posed surface's normals *with the normal map's detail*, per texel of an S x S map.

    Our maps are in a UV-aligned tangent frame (T along +u, B along +v: each texel's triangle's dP/du, dP/dv made
    orthogonal to the interpolated vertex normal N), so a texel's world normal is ``x T + y B + z N``. Two images
    come from it:

    * :meth:`display_image`: the ``normals`` display, ``0.5 n + 0.5`` through the unlit shader;
    * :meth:`filament_image`: the normal map re-expressed in the frame Filament shades with. Open3D's
      tensor meshes cannot carry tangents: Filament builds each vertex's frame from the world normal alone
      (Frisvad's basis, Y up: ``SurfaceOrientation::buildWithNormalsOnly``; measured: at the front, its T is
      -Y and its B +X, a quarter turn from ours), which turns with the pose. So the map is re-projected per
      pose: ``(w.T_f, w.B_f, w.N)`` for the world normal w. (Frisvad's basis is singular for normals
      pointing straight down, under the chin, where the shaded detail may show seams.)

    What does not change with the pose (each texel's triangle, barycentrics, UV-gradient coefficients and the
    map's normal) is found once; a pose then costs a few gathers over the ~S^2 / 2 texels in charts.
    """

    def __init__(self, model, maps: SurfaceMaps, size: int = MAX_TEXTURE):
        from scipy.ndimage import distance_transform_edt

        from ..appearance.uvmap import UVTexels

        n = _shrink(maps.normal, size)  # the map's own texel grid (square), at most ``size``
        self.size = S = int(n.shape[0])
        tx = UVTexels(model, S)
        self.index = tx.index.numpy()
        self.faces = tx.faces.numpy()  # (M, 3) model vertex ids
        self.bary = tx.bary.numpy().astype(np.float32)  # (M, 3)
        self.model_faces = model.faces.cpu().numpy()
        # Each texel's triangle id (UVTexels gives its corners): a UV triangle's three UV ids name it.
        uv_faces = model.uv_faces.cpu().numpy().astype(np.int64)
        T = int(uv_faces.max()) + 1
        key = (uv_faces[:, 0] * T + uv_faces[:, 1]) * T + uv_faces[:, 2]
        order = np.argsort(key)
        tk = tx.uv_faces.numpy().astype(np.int64)
        self.face_id = order[np.searchsorted(key[order], (tk[:, 0] * T + tk[:, 1]) * T + tk[:, 2])]  # (M,)
        uv = model.uvs.cpu().numpy().astype(np.float64)[uv_faces]  # (F, 3, 2)
        d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
        det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
        inv = np.where(np.abs(det) > 1e-14, 1.0 / np.where(np.abs(det) > 1e-14, det, 1.0), 0.0)
        # dP/du = (e1 d2v - e2 d1v) / det, dP/dv = (e2 d1u - e1 d2u) / det, with e1, e2 the triangle's edges.
        self.coef = (np.stack([d2[:, 1], -d1[:, 1], -d2[:, 0], d1[:, 0]], 1) * inv[:, None]).astype(np.float32)  # (F, 4)
        n = n.reshape(-1, 3)[self.index]
        self.tangent_normal = (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)).astype(np.float32)  # (M, 3)
        inside = np.zeros(S * S, bool)
        inside[self.index] = True
        # Texels outside the charts copy their nearest chart texel, so bilinear sampling at seams does not bleed.
        _, (r, c) = distance_transform_edt(~inside.reshape(S, S), return_indices=True)
        self.nearest = (r * S + c).reshape(-1)

    def world(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, 3) world normals with the map's detail and (M, 3) smooth interpolated vertex normals, for posed
        model vertices ``verts`` (V, 3)."""
        from ..geometry import vertex_normals_np

        v = np.asarray(verts, np.float32)
        vn = vertex_normals_np(v, self.model_faces)
        f = self.model_faces
        e1, e2 = v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]  # (F, 3): per triangle, then gathered per texel
        c = self.coef
        dpdu = (e1 * c[:, 0:1] + e2 * c[:, 1:2])[self.face_id]
        dpdv = (e1 * c[:, 2:3] + e2 * c[:, 3:4])[self.face_id]
        b = self.bary
        n = vn[self.faces[:, 0]] * b[:, 0:1] + vn[self.faces[:, 1]] * b[:, 1:2] + vn[self.faces[:, 2]] * b[:, 2:3]
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        t = dpdu - n * np.einsum("mc,mc->m", n, dpdu)[:, None]
        t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
        b = np.cross(n, t)
        b *= np.where(np.einsum("mc,mc->m", b, dpdv) < 0, -1.0, 1.0).astype(np.float32)[:, None]
        tn = self.tangent_normal
        w = tn[:, 0:1] * t + tn[:, 1:2] * b + tn[:, 2:3] * n
        w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-9)
        return w, n

    def _to_image(self, values: np.ndarray) -> np.ndarray:
        """(S, S, 3) float map from (M, 3) texel values, outside texels copying their nearest chart texel."""
        out = np.zeros((self.size * self.size, 3), np.float32)
        out[self.index] = values
        return out[self.nearest].reshape(self.size, self.size, 3)

    def display_image(self, verts: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 texture the unlit shader shows as ``0.5 w + 0.5`` (w: world normal with detail)."""
        w, _ = self.world(verts)
        return SurfaceMaps.display_image(self._to_image(w * 0.5 + 0.5))

    def filament_image(self, verts: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 normal map in Filament's normal-only tangent frames of this pose (class docstring)."""
        w, n = self.world(verts)
        t, b = frisvad_basis(n)
        m = np.stack([np.einsum("mc,mc->m", w, t), np.einsum("mc,mc->m", w, b), np.einsum("mc,mc->m", w, n)], 1)
        return np.clip(np.rint(self._to_image(m * 127.5 + 127.5)), 0, 255).astype(np.uint8)


def frisvad_basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) tangents and (N, 3) bitangents Filament builds from (N, 3) unit normals alone (Frisvad 2012 with
    +Y as the pole, as Filament's ``SurfaceOrientation`` does)."""
    n = np.asarray(n, np.float32)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    sing = y < -1.0 + 1e-6
    a = 1.0 / np.where(sing, 1.0, 1.0 + y)
    b = -z * x * a
    t = np.stack([b, -z, 1.0 - z * z * a], 1)
    bt = np.stack([1.0 - x * x * a, -x, b], 1)
    t[sing], bt[sing] = (-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
    return t, bt


def load_surface_maps(folder: Union[str, Path], model_name: Optional[str] = None) -> SurfaceMaps:
    """:class:`SurfaceMaps` of an appearance folder; ``model_name``: the head model they must belong to.

    Raises:
        MissingFileError / BadInputError: no such folder, not an appearance folder, a map missing, or maps made
            for another head model's UV layout.
    """
    from ..appearance.maps import AppearanceMaps
    from ..errors import MissingFileError

    folder = Path(folder)
    if folder.name == "material.json":
        folder = folder.parent
    if not folder.exists():
        raise MissingFileError(folder, "Pass a folder written by 'avatar3d appearance' (it holds material.json).")
    maps = SurfaceMaps(AppearanceMaps.load(folder), folder)
    if model_name is not None and maps.model and maps.model != model_name.lower():
        raise BadInputError(f"{folder} holds maps in the {maps.model} head model's UV layout, but the viewer shows the "
                            f"{model_name} head model; run 'avatar3d appearance' again for this model")
    return maps

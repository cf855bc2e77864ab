"""Procedural ground-truth material maps in a head model's UV layout (albedo, specular, roughness, detail).

The truth for scoring reflectance capture (issue #13): :func:`make_maps` returns :class:`MaterialMaps`
with, per texel of a ``resolution`` x ``resolution`` texture (row 0 = top = UV v 1, the model's OBJ
convention):

* ``albedo`` (H, W, 3) linear RGB, the model's own albedo texture (sRGB 8-bit) decoded and resampled;
* ``specular`` (H, W) F0, the reflectance at normal incidence: ~0.028 on skin (IOR 1.4) with per-region
  variation (T-zone higher), lower in hair and brows, cornea/teeth/lips their own values;
* ``roughness`` (H, W) perceptual roughness (GGX alpha = roughness^2): ~0.5 +- 0.1 on skin, forehead
  and nose shinier, cheeks rougher, lips smoother, hair rough, eyes glossy;
* ``displacement`` (H, W) metres along the surface normal (negative = into the skin): pores (pits of
  0.05-0.1 mm), a fine grain, forehead lines, crow's feet and nasolabial folds (down to ~-0.5 mm);
* ``normal`` (H, W, 3) unit tangent-space normals of the displaced surface (glTF convention: x along
  the UV tangent +u, y = n x t, which is +v for this right-handed layout, z out of the surface), derived
  from the displacement's gradient on the template mesh (:func:`tangent_normals`).

Everything is deterministic from ``seed`` (pore positions and noise are drawn in continuous UV, so
their layout does not depend on the resolution). Regions come from the model: part ids (eyes, teeth),
landmark positions in UV (T-zone, cheeks, eye corners, nose wings, mouth corners) and the albedo (hair
and brows are dark, lips red).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from ..models.base import HeadModel
from ..render.color import srgb_decode, srgb_encode

__all__ = ["UVGeometry", "MaterialMaps", "uv_geometry", "landmark_uv", "make_maps", "tangent_normals", "MAPS_VERSION"]

#: Bump when the procedural maps change (part of every cache key built on them).
MAPS_VERSION = 1


@dataclass
class UVGeometry:
    """The template mesh seen from its UV layout, per texel of an (H, W) texture (zero outside the charts).

    ``position``/``normal``/``tangent``/``bitangent`` (H, W, 3): template surface point (metres), unit
    interpolated vertex normal, unit tangent (+u projected on the tangent plane), ``normal x tangent``;
    ``grad_t``/``grad_b`` (H, W, 2): ``(dh/du, dh/dv) . grad_t`` is the slope of a height field h along
    the tangent (resp. bitangent) per metre, from the face's UV Jacobian; ``covered`` (H, W) bool;
    ``part`` (H, W) int part id (``model.extras["part_names"]``), -1 outside; ``metres_per_uv`` (2,)
    median |dp/du|, |dp/dv| on the head.
    """

    position: np.ndarray
    normal: np.ndarray
    tangent: np.ndarray
    bitangent: np.ndarray
    grad_t: np.ndarray
    grad_b: np.ndarray
    covered: np.ndarray
    part: np.ndarray
    metres_per_uv: np.ndarray


@dataclass
class MaterialMaps:
    """Ground-truth material maps (see the module docstring for units and conventions)."""

    albedo: np.ndarray  #: (H, W, 3) linear RGB in [0, 1]
    specular: np.ndarray  #: (H, W) F0
    roughness: np.ndarray  #: (H, W) perceptual roughness
    displacement: np.ndarray  #: (H, W) metres along the normal
    normal: np.ndarray  #: (H, W, 3) unit tangent-space normals (glTF)
    covered: np.ndarray  #: (H, W) bool, texels inside a UV triangle

    @property
    def resolution(self) -> int:
        return self.albedo.shape[0]

    def normal_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 normal-map image (glTF: rgb = 0.5 n + 0.5)."""
        return np.clip(np.round((self.normal * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)

    def save(self, out_dir: Union[str, Path]) -> Path:
        """``maps.npz`` (float32, exact) and PNG previews (albedo sRGB, F0 x 10, roughness, normal, displacement)."""
        import cv2

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "maps.npz", albedo=self.albedo, specular=self.specular, roughness=self.roughness,
                            displacement=self.displacement, normal=self.normal, covered=self.covered)
        u8 = lambda x: np.clip(np.round(x * 255), 0, 255).astype(np.uint8)  # noqa: E731
        cv2.imwrite(str(out / "albedo.png"), u8(srgb_encode(self.albedo))[..., ::-1])
        cv2.imwrite(str(out / "specular_x10.png"), u8(self.specular * 10))
        cv2.imwrite(str(out / "roughness.png"), u8(self.roughness))
        cv2.imwrite(str(out / "normal.png"), self.normal_rgb()[..., ::-1])
        cv2.imwrite(str(out / "displacement.png"), u8(0.5 + self.displacement / 1e-3))  # 1 mm full range, 0 = grey
        return out

    @classmethod
    def load(cls, path: Union[str, Path]) -> "MaterialMaps":
        """From a ``maps.npz`` written by :meth:`save` (or its folder)."""
        p = Path(path)
        z = np.load(p / "maps.npz" if p.is_dir() else p)
        return cls(**{k: z[k] for k in ("albedo", "specular", "roughness", "displacement", "normal", "covered")})


def landmark_uv(model: HeadModel) -> np.ndarray:
    """(478, 2) UV (origin bottom-left) of the model's MediaPipe landmarks."""
    uv, uvf = model.uvs.numpy().astype(np.float64), model.uv_faces.numpy()
    return (uv[uvf[np.asarray(model.lmk_faces)]] * np.asarray(model.lmk_bary)[..., None]).sum(1)


def _uv_raster(model: HeadModel, resolution: int):
    """Rasterize the UV layout: per-texel triangle id (-1 outside) and barycentrics (H, W, 3)."""
    from ..render.mesh import rasterize

    uv = model.uvs.float()
    pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0]), torch.ones_like(uv[:, 0])], -1)
    rast, _ = rasterize(pos[None], model.uv_faces.to(torch.int32), (resolution, resolution))
    r = rast[0].numpy().astype(np.float64)
    return r[..., 3].astype(np.int64) - 1, np.stack([r[..., 0], r[..., 1], 1 - r[..., 0] - r[..., 1]], -1)


def uv_geometry(model: HeadModel, resolution: int) -> UVGeometry:
    """:class:`UVGeometry` of ``model``'s template (neutral shape and expression) at ``resolution``^2 texels."""
    from ..geometry import vertex_normals_np

    fid, bary = _uv_raster(model, resolution)
    cov = fid >= 0
    f = np.where(cov, fid, 0)
    faces, uvf = model.faces.numpy(), model.uv_faces.numpy()
    v = model.v_template.numpy().astype(np.float64)
    uv = model.uvs.numpy().astype(np.float64)
    vn = vertex_normals_np(v, faces)
    # rasterize's barycentrics (b0, b1) weight the triangle's vertices 0 and 1; the rest is vertex 2.
    interp = lambda a: np.einsum("hwk,hwkc->hwc", bary, a[faces[f]])  # noqa: E731
    pos, n = interp(v), interp(vn)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    # Per-face UV Jacobian J = [dp/du dp/dv] (3, 2) from P = J D.
    P = np.stack([v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]], -1)
    D = np.stack([uv[uvf[:, 1]] - uv[uvf[:, 0]], uv[uvf[:, 2]] - uv[uvf[:, 0]]], -1)
    ok = np.abs(np.linalg.det(D)) > 1e-12
    J = np.zeros_like(P)
    J[ok] = P[ok] @ np.linalg.inv(D[ok])
    # Dual basis G = J (J^T J)^-1: the 3D gradient of h is G (dh/du, dh/dv).
    JtJ = J.transpose(0, 2, 1) @ J
    good = ok & (np.abs(np.linalg.det(JtJ)) > 1e-18)
    G = np.zeros_like(J)
    G[good] = J[good] @ np.linalg.inv(JtJ[good])
    Jt, Gt = J[f], G[f]
    t = Jt[..., 0] - n * np.sum(n * Jt[..., 0], -1, keepdims=True)
    t /= np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
    b = np.cross(n, t)
    grad_t, grad_b = np.einsum("hwcj,hwc->hwj", Gt, t), np.einsum("hwcj,hwc->hwj", Gt, b)
    part_v = np.asarray(model.extras["part_ids"])
    part = np.where(cov, part_v[faces[f, 0]], -1)
    m = cov & (part == 0)
    mpu = np.array([np.median(np.linalg.norm(Jt[..., 0], axis=-1)[m]), np.median(np.linalg.norm(Jt[..., 1], axis=-1)[m])])
    z = lambda a: np.where(cov[..., None], a, 0).astype(np.float32)  # noqa: E731
    return UVGeometry(z(pos), z(n), z(t), z(b), z(grad_t), z(grad_b), cov, part, mpu)


def uv_gradient(h: np.ndarray) -> np.ndarray:
    """(H, W, 2) (dh/du, dh/dv) of a texture ``h`` (H, W) by central differences (v grows upwards: row 0 is v = 1)."""
    H, W = h.shape
    gy, gx = np.gradient(h.astype(np.float64))
    return np.stack([gx * W, -gy * H], -1)


def tangent_normals(displacement: np.ndarray, geom: UVGeometry) -> np.ndarray:
    """(H, W, 3) unit tangent-space normals of the template displaced by ``displacement`` (H, W) metres.

    First-order bump mapping: the displaced normal is ``normalize(n - grad h)`` with ``grad h`` the
    surface gradient of the height, so in the (tangent, bitangent, normal) frame it is
    ``normalize(-dh/dt, -dh/db, 1)``. Texels outside the charts get (0, 0, 1).
    """
    g = uv_gradient(displacement)
    st = np.sum(g * geom.grad_t, -1)
    sb = np.sum(g * geom.grad_b, -1)
    n = np.stack([-st, -sb, np.ones_like(st)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(geom.covered[..., None], n, np.array([0.0, 0.0, 1.0])).astype(np.float32)


# ----------------------------------------------------------------------------- procedural pieces
def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


class _FaceFrame:
    """Metric coordinates around UV landmarks: texel (u, v) -> millimetres from a landmark, x along +u, y along +v."""

    def __init__(self, resolution: int, lmk_uv: np.ndarray, metres_per_uv: np.ndarray):
        c = (np.arange(resolution) + 0.5) / resolution
        self.u, self.v = np.meshgrid(c, 1 - c)  # (H, W): row 0 is v = 1
        self.lmk = lmk_uv
        self.mm = metres_per_uv * 1e3

    def offset(self, uv0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) millimetres of every texel from ``uv0`` (2,)."""
        return (self.u - uv0[0]) * self.mm[0], (self.v - uv0[1]) * self.mm[1]

    def blob(self, idx: int, sx: float, sy: float, dy: float = 0.0) -> np.ndarray:
        """Gaussian window (H, W) around landmark ``idx`` (shifted ``dy`` mm up), std ``sx``, ``sy`` mm."""
        x, y = self.offset(self.lmk[idx])
        return np.exp(-0.5 * ((x / sx) ** 2 + ((y - dy) / sy) ** 2))

    def valley(self, points_mm: np.ndarray, origin: np.ndarray, depth_mm: float, width_mm: float) -> np.ndarray:
        """A fold along the polyline ``points_mm`` (P, 2) (mm from UV ``origin``): -depth exp(-d^2 / 2 w^2), metres."""
        x, y = self.offset(origin)
        d2 = np.full(x.shape, np.inf)
        s = np.zeros(x.shape)  # arc parameter (0..1) of the nearest point on the polyline
        P = len(points_mm)
        for i, ((ax, ay), (bx, by)) in enumerate(zip(points_mm[:-1], points_mm[1:])):
            ex, ey = bx - ax, by - ay
            t = np.clip(((x - ax) * ex + (y - ay) * ey) / max(ex * ex + ey * ey, 1e-12), 0, 1)
            di = (x - ax - t * ex) ** 2 + (y - ay - t * ey) ** 2
            closer = di < d2
            d2 = np.where(closer, di, d2)
            s = np.where(closer, (i + t) / (P - 1), s)
        fade = np.sin(np.pi * s) ** 0.5  # folds fade out towards their ends rather than stopping abruptly
        return -depth_mm * 1e-3 * fade * np.exp(-0.5 * d2 / width_mm**2)


def _smooth_noise(g: np.random.Generator, resolution: int, sigma_frac: float, grid: int = 256) -> np.ndarray:
    """(H, W) unit-std noise smoothed at ``sigma_frac`` of the texture (drawn on a fixed ``grid``: resolution-independent)."""
    import cv2

    base = cv2.GaussianBlur(g.standard_normal((grid, grid)).astype(np.float32), (0, 0), max(sigma_frac * grid, 0.5))
    up = cv2.resize(base, (resolution, resolution), interpolation=cv2.INTER_CUBIC)
    return up / (up.std() + 1e-12)


def _regions(model: HeadModel, geom: UVGeometry, albedo: np.ndarray, frame: _FaceFrame) -> dict[str, np.ndarray]:
    """Soft (H, W) masks in [0, 1]: skin, hair (incl. brows), lips, eyes, teeth, mouth, tzone, cheeks."""
    names = list(model.extras["part_names"])
    part = geom.part
    head = (part == names.index("head")) | np.isin(part, [names.index(n) for n in ("ear_left", "ear_right")])
    lum = albedo @ np.array([0.2126, 0.7152, 0.0722])
    red = (albedo[..., 0] - albedo[..., 1]) / np.maximum(albedo[..., 0], 1e-3)
    hair = head * (1 - _smoothstep(lum, 0.06, 0.16))
    mouth_zone = frame.blob(13, 30, 14)
    lips = head * _smoothstep(red, 0.62, 0.72) * mouth_zone * (1 - hair)
    eyes = np.isin(part, [names.index("eye_left"), names.index("eye_right")]).astype(np.float64)
    teeth = np.isin(part, [names.index("teeth_upper"), names.index("teeth_lower")]).astype(np.float64)
    mouth = (part == names.index("bag")).astype(np.float64)
    skin = head * (1 - hair) * (1 - lips)
    tzone = np.maximum(frame.blob(151, 30, 14), frame.blob(4, 7, 16, dy=6))
    cheeks = np.maximum(frame.blob(50, 14, 14), frame.blob(280, 14, 14))
    return dict(skin=skin, hair=hair, lips=lips, eyes=eyes, teeth=teeth, mouth=mouth, tzone=tzone, cheeks=cheeks)


def _pores(g: np.random.Generator, resolution: int, density: np.ndarray, metres_per_uv: np.ndarray) -> np.ndarray:
    """(H, W) metres: pits 0.05-0.1 mm deep at Poisson positions (in continuous UV) thinned by ``density`` in [0, 1]."""
    import cv2

    n = int(3.0 / (metres_per_uv[0] * metres_per_uv[1] * 1e6))  # up to ~3 pores per mm^2 before thinning
    n = min(n, 400_000)
    uv = g.random((n, 2))
    depth = g.uniform(0.05e-3, 0.1e-3, n)
    keep = g.random(n)
    H = W = resolution
    col, row = uv[:, 0] * W - 0.5, (1 - uv[:, 1]) * H - 0.5
    ci, ri = np.clip(np.round(col).astype(int), 0, W - 1), np.clip(np.round(row).astype(int), 0, H - 1)
    sel = keep < density[ri, ci]
    img = np.zeros((H, W), np.float64)
    np.add.at(img, (ri[sel], ci[sel]), depth[sel])
    # A pit's radius ~0.1 mm: narrower than a texel at these resolutions, so each pore is a one-texel-wide Gaussian
    # whose peak keeps its depth (the impulse is scaled by the kernel's peak).
    sigma = 0.6
    k = cv2.GaussianBlur(np.pad(np.ones((1, 1)), 4), (0, 0), sigma).max()
    return -cv2.GaussianBlur(img, (0, 0), sigma) / k


def _wrinkles(frame: _FaceFrame) -> np.ndarray:
    """(H, W) metres: forehead lines, crow's feet and nasolabial folds (valleys up to ~0.5 mm)."""
    L = frame.lmk
    out = np.zeros_like(frame.u)
    # Forehead: three wavy horizontal lines between the brows (lmk 9) and the hairline (lmk 10).
    y9, y10 = (L[9][1] - L[151][1]) * frame.mm[1], (L[10][1] - L[151][1]) * frame.mm[1]
    xs = np.linspace(-38, 38, 40)
    for k, frac in enumerate((0.25, 0.5, 0.75)):
        y = y9 + frac * (y10 - y9) + 1.2 * np.sin(xs / 9 + k) + 0.004 * xs**2 * (0.5 - frac)
        out += frame.valley(np.stack([xs, y], -1), L[151], 0.3 + 0.05 * k, 0.45)
    # Crow's feet: a fan of three folds out from each outer eye corner (33: image left, 263: image right).
    for idx, side in ((33, -1.0), (263, 1.0)):
        for ang in (-28.0, 0.0, 25.0):
            a = np.deg2rad(ang)
            r = np.linspace(4, 16, 8)
            pts = np.stack([side * r * np.cos(a), r * np.sin(a)], -1)
            out += frame.valley(pts, L[idx], 0.22, 0.3)
    # Nasolabial folds: from above the nose wing (102, 331) curving out and down past the mouth corner (61, 291).
    for wing, corner, side in ((102, 61, -1.0), (331, 291, 1.0)):
        p0 = (L[wing] - L[wing]) * frame.mm + np.array([side * 3.0, 2.0])
        p2 = (L[corner] - L[wing]) * frame.mm + np.array([side * 6.0, -8.0])
        p1 = (p0 + p2) / 2 + np.array([side * 6.0, 0.0])
        s = np.linspace(0, 1, 12)[:, None]
        pts = (1 - s) ** 2 * p0 + 2 * s * (1 - s) * p1 + s**2 * p2
        out += frame.valley(pts, L[wing], 0.5, 1.3)
    return out


def make_maps(model: HeadModel, resolution: int = 1024, seed: int = 0, geometry: UVGeometry | None = None) -> MaterialMaps:
    """Ground-truth :class:`MaterialMaps` for ``model`` (one with an ``albedo`` texture and landmarks) at ``resolution``^2."""
    import cv2

    if "albedo" not in model.extras or model.lmk_faces is None:
        raise ValueError(f"head model {model.name!r} needs an albedo texture and embedded landmarks for procedural maps")
    if not 64 <= resolution <= 4096:
        raise ValueError(f"map resolution must be 64-4096 texels, got {resolution}")
    geom = geometry or uv_geometry(model, resolution)
    g = np.random.default_rng(seed)
    tex = model.extras["albedo"].astype(np.float32) / 255.0
    interp = cv2.INTER_AREA if resolution < tex.shape[0] else cv2.INTER_CUBIC
    albedo = np.clip(srgb_decode(cv2.resize(tex, (resolution, resolution), interpolation=interp).astype(np.float64)), 0, 1)
    frame = _FaceFrame(resolution, landmark_uv(model), geom.metres_per_uv)
    r = _regions(model, geom, albedo, frame)
    n1, n2 = _smooth_noise(g, resolution, 0.03), _smooth_noise(g, resolution, 0.01)

    rough_skin = 0.52 - 0.13 * r["tzone"] + 0.08 * r["cheeks"] + 0.04 * n1
    rough = (r["skin"] * rough_skin + r["hair"] * (0.78 + 0.05 * n2) + r["lips"] * 0.38
             + r["eyes"] * 0.08 + r["teeth"] * 0.3 + r["mouth"] * 0.35)
    f0_skin = 0.028 + 0.006 * r["tzone"] + 0.002 * n1
    spec = (r["skin"] * f0_skin + r["hair"] * 0.012 + r["lips"] * 0.03
            + r["eyes"] * 0.025 + r["teeth"] * 0.04 + r["mouth"] * 0.025)
    rest = np.clip(1 - r["skin"] - r["hair"] - r["lips"] - r["eyes"] - r["teeth"] - r["mouth"], 0, 1)  # gaps: skin values
    rough, spec = rough + rest * 0.5, spec + rest * 0.028

    skin = r["skin"] * (1 - r["eyes"])
    pore_density = skin * np.clip(0.35 + 0.5 * frame.blob(4, 12, 14) + 0.3 * r["cheeks"] + 0.1 * n2, 0, 1)
    disp = _pores(g, resolution, pore_density, geom.metres_per_uv)
    disp += skin * 0.008e-3 * _smooth_noise(g, resolution, 0.0008, grid=1024)  # fine grain
    disp += skin * _wrinkles(frame)
    disp = np.where(geom.covered, disp, 0.0)
    normal = tangent_normals(disp, geom)
    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    return MaterialMaps(f32(albedo), f32(np.clip(spec, 0.005, 0.08)), f32(np.clip(rough, 0.05, 1.0)), f32(disp), normal, geom.covered)

"""Separate parts of the built-in head: eyeballs, ears and the mouth-interior bag.

Each builder returns vertices (metres), outward-oriented triangles, per-vertex UVs in the part's
own unit square (placed into the atlas by ``uv.py``) and per-face UV triangles (seams allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry import face_normals_np
from .anatomy import Anatomy

EYE_LAT = 14  #: latitude rings of an eyeball (symmetric about the equator)
EYE_LON = 18
EAR_PHI = 28  #: samples around the ear outline
EAR_RINGS = 8  #: rings from the ear centre to the rim (front side)
BAG_RINGS = 5


@dataclass
class Part:
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) local indices
    uvs: np.ndarray  # (T, 2) in the part's unit square
    uv_faces: np.ndarray  # (F, 3) local indices into uvs


def eyeball(center: np.ndarray, radius: float) -> Part:
    """A UV sphere whose front pole looks down +Z; UVs are an azimuthal disk (iris at the centre)."""
    th = np.pi * np.arange(1, EYE_LAT + 1) / (EYE_LAT + 1)  # polar angle from the front (+Z) pole
    ph = 2 * np.pi * np.arange(EYE_LON) / EYE_LON
    T, P = np.meshgrid(th, ph, indexing="ij")
    ring = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]]) * radius + center
    front, back = 0, 1 + EYE_LAT * EYE_LON

    def idx(i, j):
        return 1 + i * EYE_LON + j % EYE_LON

    # UV: radius proportional to the polar angle; a seam column (j = EYE_LON) duplicates j = 0.
    def uvp(t, p):
        r = 0.5 * (t / np.pi) ** 0.6  # more texels on the iris than on the hidden back
        return [0.5 + r * np.cos(p), 0.5 + r * np.sin(p)]

    uvs = [uvp(0, 0)]
    for i in range(EYE_LAT):
        for j in range(EYE_LON + 1):
            uvs.append(uvp(th[i], 2 * np.pi * j / EYE_LON))
    back_uv0 = len(uvs)
    for j in range(EYE_LON):
        uvs.append(uvp(np.pi * 0.999, 2 * np.pi * (j + 0.5) / EYE_LON))

    def tidx(i, j):
        return 1 + i * (EYE_LON + 1) + j

    faces, uvf = [], []
    # The ring parameterisation (cos P, sin P) runs counter-clockwise seen from the front, so
    # (pole, j, j+1) faces outward.
    for j in range(EYE_LON):
        faces.append((front, idx(0, j), idx(0, j + 1)))
        uvf.append((0, tidx(0, j), tidx(0, j + 1)))
    for i in range(EYE_LAT - 1):
        for j in range(EYE_LON):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j + 1), idx(i + 1, j)
            ta, tb, tc, td = tidx(i, j), tidx(i, j + 1), tidx(i + 1, j + 1), tidx(i + 1, j)
            faces += [(a, d, c), (a, c, b)]
            uvf += [(ta, td, tc), (ta, tc, tb)]
    for j in range(EYE_LON):
        faces.append((back, idx(EYE_LAT - 1, j + 1), idx(EYE_LAT - 1, j)))
        uvf.append((back_uv0 + j, tidx(EYE_LAT - 1, j + 1), tidx(EYE_LAT - 1, j)))
    return Part(v, np.array(faces), np.array(uvs), np.array(uvf))


def _ear_outline(phi: np.ndarray) -> np.ndarray:
    """Ear outline radius (metres) around the ear centre in the ear plane; phi=0 points backward."""
    s, h = np.cos(phi), np.sin(phi)
    a = np.where(s > 0, 0.0190, 0.0150)  # wider towards the back (the helix) than the front
    b = np.where(h > 0, 0.0350, 0.0320)
    r = 1.0 / np.sqrt((s / a) ** 2 + (h / b) ** 2)
    # Narrower lobe: pull the lower-back quadrant in.
    r *= 1 - 0.18 * np.exp(-(((phi + 1.25) / 0.45) ** 2))
    return r


def _angdiff(a: np.ndarray, b: float) -> np.ndarray:
    return np.arctan2(np.sin(a - b), np.cos(a - b))


def _ear_relief(rho: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Outward height (metres) of the front (lateral) ear surface: helix, antihelix, concha, tragus, lobe."""
    s, h = np.cos(phi), np.sin(phi)
    helix = 0.0045 * np.exp(-(((rho - 0.90) / 0.09) ** 2)) * (0.35 + 0.65 * (h > -0.5))
    scapha = -0.0016 * np.exp(-(((rho - 0.72) / 0.07) ** 2)) * (h > -0.3) * (s > -0.6)
    antihelix = 0.0032 * np.exp(-(((rho - 0.55) / 0.10) ** 2)) * np.clip(0.3 + s + 0.6 * h, 0, 1)
    concha = -0.0085 * np.exp(-((rho / 0.42) ** 2)) * np.clip(1.0 - 0.8 * h - 0.3 * s, 0.2, 1.3)
    tragus = 0.0035 * np.exp(-(((rho - 0.62) / 0.14) ** 2) - (_angdiff(phi, 3.3) / 0.35) ** 2)  # front, slightly low
    lobe = 0.0015 * np.exp(-(((rho - 0.6) / 0.3) ** 2) - (_angdiff(phi, -1.6) / 0.5) ** 2)
    base = 0.0040 * (1 - rho**2) + 0.0012
    return base + helix + scapha + antihelix + concha + tragus + lobe


def ear(A: Anatomy, side: int, head_x: float) -> Part:
    """A closed ear shell for side +1 (left, +X) or -1, its front edge sunk into the head at ``head_x``."""
    phi = 2 * np.pi * np.arange(EAR_PHI) / EAR_PHI
    R = _ear_outline(phi)
    rho = np.arange(1, EAR_RINGS + 1) / EAR_RINGS
    P, Rh = np.meshgrid(phi, rho, indexing="ij")  # (phi, ring)
    Rr = R[:, None] * Rh
    s, h = Rr * np.cos(P), Rr * np.sin(P)
    front_n = _ear_relief(Rh, P)
    front_n[:, -1] = 0.0  # the rim is where front and back meet
    back_rho = rho[:-1]
    Pb, Rb = np.meshgrid(phi, back_rho, indexing="ij")
    sb, hb = (R[:, None] * Rb) * np.cos(Pb), (R[:, None] * Rb) * np.sin(Pb)
    back_n = -0.0022 * (1 - Rb**2) - 0.0006
    # Local frame: e_s backward (-Z), e_h up (+Y), e_n outward (+X for the left ear), then flare the
    # ear away from the head by rotating about the vertical axis through its front edge.
    flare = np.deg2rad(30.0)
    root = np.array(A.ear_root, float)
    center_s = 0.0150  # ear centre sits behind the root
    def place(ss, hh, nn):
        ss = ss + center_s
        # rotate (s, n) by the flare angle: the back of the ear moves outward
        s2 = ss * np.cos(flare) - nn * np.sin(flare)
        n2 = ss * np.sin(flare) + nn * np.cos(flare)
        x = side * (head_x - 0.0030 + n2)
        y = root[1] + 0.004 + hh
        z = root[2] - s2
        return np.stack([x, y, z], -1)

    vf = place(np.zeros(1), np.zeros(1), _ear_relief(np.zeros(1), np.zeros(1)))
    vfr = place(s, h, front_n).reshape(-1, 3)
    vbr = place(sb, hb, back_n).reshape(-1, 3)
    vb = place(np.zeros(1), np.zeros(1), np.array([-0.0028]))
    verts = np.concatenate([vf, vfr, vbr, vb])
    nF = EAR_PHI * EAR_RINGS
    back_c = 1 + nF + EAR_PHI * (EAR_RINGS - 1)

    def fi(j, k):  # front ring k (0..RINGS-1), rim is k = RINGS-1
        return 1 + (j % EAR_PHI) * EAR_RINGS + k

    def bi(j, k):  # back ring k (0..RINGS-2); ring RINGS-1 is the shared rim
        if k == EAR_RINGS - 1:
            return fi(j, k)
        return 1 + nF + (j % EAR_PHI) * (EAR_RINGS - 1) + k

    faces = []
    for j in range(EAR_PHI):
        faces.append((0, fi(j, 0), fi(j + 1, 0)))
        faces.append((back_c, bi(j + 1, 0), bi(j, 0)))
        for k in range(EAR_RINGS - 1):
            faces += [(fi(j, k), fi(j, k + 1), fi(j + 1, k + 1)), (fi(j, k), fi(j + 1, k + 1), fi(j + 1, k))]
            faces += [(bi(j, k), bi(j + 1, k + 1), bi(j, k + 1)), (bi(j, k), bi(j + 1, k), bi(j + 1, k + 1))]
    faces = np.array(faces)
    # Orientation: front faces must point away from the head (+X side); flip everything if not.
    tri = verts[faces]
    nrm = face_normals_np(verts, faces, normalize=False)
    centroid = verts.mean(0)
    if ((nrm * (tri.mean(1) - centroid)).sum(1)).sum() < 0:
        faces = faces[:, ::-1].copy()
    # UVs: front in the left half of the part square, back in the right half (own islands).
    uf = np.concatenate([[[0.0, 0.0]], np.stack([s, h], -1).reshape(-1, 2)])
    ub = np.concatenate([np.stack([sb, hb], -1).reshape(-1, 2), np.stack([s[:, -1], h[:, -1]], -1), [[0.0, 0.0]]])
    scale = 0.48 / 0.070
    uvs = np.concatenate([uf * scale * np.array([side * 1.0, 1]) + [0.25, 0.5], ub * scale * np.array([side * -1.0, 1]) + [0.75, 0.5]])
    nB = len(sb.reshape(-1))
    rim_b0 = 1 + nF + nB
    back_c_uv = rim_b0 + EAR_PHI

    # Back faces use the back island, including their rim vertices.
    uvf = []
    back_set = set(range(1 + nF, back_c + 1))
    for f in faces:
        if any(v in back_set for v in f):
            row = []
            for v in f:
                if v in back_set:
                    row.append(back_c_uv if v == back_c else v)
                else:  # a rim vertex seen from the back island
                    j = (v - 1) // EAR_RINGS
                    row.append(rim_b0 + j)
            uvf.append(row)
        else:  # front island: UV index == vertex index (centre + front rings)
            uvf.append(list(f))
    return Part(verts, faces, uvs, np.array(uvf))


def mouth_bag(loop_pts: np.ndarray, lower: np.ndarray, A: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rings of a mouth-interior bag hanging behind the lip opening.

    Args:
        loop_pts: (N, 3) the lip-opening loop (lower lip left-to-right, then upper lip back).
        lower: (N,) bool, True for loop points on the lower lip.
    Returns:
        vertices (BAG_RINGS * N + 1, 3), ring parameter per vertex (0 at lips, 1 at the back), and
        the lateral fraction per vertex (-1..1) used for UVs.
    """
    n = len(loop_pts)
    xs = loop_pts[:, 0]
    w = np.abs(xs).max()
    xf = xs / max(w, 1e-9)
    out, param = [], []
    for k in range(1, BAG_RINGS + 1):
        t = k / BAG_RINGS
        depth = 0.006 + 0.046 * t
        half_h = 0.004 + 0.013 * np.sin(np.pi * min(t * 1.1, 1.0)) ** 0.7
        half_w = w * (1.0 - 0.12 * t) * (1 - 0.45 * t**3)
        ell = np.sqrt(np.clip(1 - xf**2, 0, 1))
        y = A.mouth_y - 0.004 * t + np.where(lower, -1, 1) * half_h * np.maximum(ell, 0.08)
        x = xf * half_w
        z = A.mouth_z - depth - 0.016 * xf**2 * (1 + t)
        out.append(np.stack([x, y, z], 1))
        param.append(np.full(n, t))
    out.append(np.array([[0.0, A.mouth_y - 0.006, A.mouth_z - 0.058]]))
    param.append(np.ones(1))
    return np.concatenate(out), np.concatenate(param), np.concatenate([np.tile(xf, BAG_RINGS), [0.0]])


TEETH_SEG = 16  #: segments along a dental arch


def teeth(A: Anatomy, upper: bool) -> Part:
    """One closed dental arch (a curved bar of rectangular section) just behind the lips.

    The incisal edges meet at the lip line; the gum side hides inside the lips. UVs: along the
    arch across, around the section up (seam column duplicated), end caps squeezed into a corner.
    """
    phi = np.linspace(-1.25, 1.25, TEETH_SEG + 1)
    # The lower arch sits just behind the upper one (overbite), so they never intersect.
    front_z = A.mouth_z - (0.0125 if upper else 0.0175)
    # Parabolic-ish arch: 22 mm half-width at the back, set back 24 mm at its ends.
    half_w = 0.0215 if upper else 0.0195
    ax, az = np.sin(phi) * half_w, front_z - 0.026 * (1 - np.cos(phi))
    sgn = 1.0 if upper else -1.0
    edge = A.mouth_y + (-0.0025 if upper else -0.0010)  # incisal edges: the upper overlaps the lower
    root = edge + sgn * (0.0115 if upper else 0.0095)
    depth = 0.0045  # front-to-back thickness of the bar
    # Section corners (outer-edge, outer-root, inner-root, inner-edge), going around consistently.
    nrm = np.stack([np.sin(phi), np.zeros_like(phi), np.cos(phi)], 1)  # outward in the arch plane
    base = np.stack([ax, np.zeros_like(ax), az], 1)
    corners = []
    for off, yy in ((0.0, edge), (0.0, root), (-depth, root), (-depth, edge)):
        p = base + off * nrm
        p[:, 1] = yy
        corners.append(p)
    v = np.stack(corners, 1).reshape(-1, 3)  # (SEG+1)*4, index = i*4 + k
    faces, uvf, uvs = [], [], []
    for i in range(TEETH_SEG + 1):
        for k in range(5):
            uvs.append([i / TEETH_SEG, 0.02 + 0.96 * k / 4])
    for i in range(TEETH_SEG):
        for k in range(4):
            a, b = i * 4 + k, i * 4 + (k + 1) % 4
            c, d = (i + 1) * 4 + (k + 1) % 4, (i + 1) * 4 + k
            ta, tb, tc, td = i * 5 + k, i * 5 + k + 1, (i + 1) * 5 + k + 1, (i + 1) * 5 + k
            faces += [(a, b, c), (a, c, d)]
            uvf += [(ta, tb, tc), (ta, tc, td)]
    cap0 = len(uvs)
    uvs += [[0.0, 0.0], [0.02, 0.0], [0.02, 0.02], [0.0, 0.02]]
    last = TEETH_SEG * 4
    faces += [(0, 2, 1), (0, 3, 2), (last, last + 1, last + 2), (last, last + 2, last + 3)]
    uvf += [(cap0, cap0 + 2, cap0 + 1), (cap0, cap0 + 3, cap0 + 2), (cap0, cap0 + 1, cap0 + 2), (cap0, cap0 + 2, cap0 + 3)]
    faces, uvf = np.array(faces), np.array(uvf)
    # Orient outward (positive signed volume), flipping the UV triangles along.
    vol = np.einsum("ij,ij->i", v[faces[:, 0]] - v.mean(0), np.cross(v[faces[:, 1]] - v.mean(0), v[faces[:, 2]] - v.mean(0))).sum()
    if vol < 0:
        faces, uvf = faces[:, ::-1].copy(), uvf[:, ::-1].copy()
    uvs = np.array(uvs)
    q = uvs[uvf[0]]
    if (q[1, 0] - q[0, 0]) * (q[2, 1] - q[0, 1]) - (q[1, 1] - q[0, 1]) * (q[2, 0] - q[0, 0]) < 0:
        uvs[:cap0, 1] = 1.0 - uvs[:cap0, 1]  # the lower arch winds the other way: mirror its tube map
    # Each end cap has its own UV square: mirror it where needed so no UV triangle is flipped.
    for t0 in (len(faces) - 4, len(faces) - 2):
        q = uvs[uvf[t0]]
        if (q[1, 0] - q[0, 0]) * (q[2, 1] - q[0, 1]) - (q[1, 1] - q[0, 1]) * (q[2, 0] - q[0, 0]) < 0:
            mirror = {cap0: cap0, cap0 + 1: cap0 + 3, cap0 + 2: cap0 + 2, cap0 + 3: cap0 + 1}
            uvf[t0 : t0 + 2] = np.vectorize(mirror.get)(uvf[t0 : t0 + 2])
    uvs[:, 1] = uvs[:, 1] * 0.48 + (0.51 if upper else 0.01)
    return Part(v, faces, uvs, uvf)

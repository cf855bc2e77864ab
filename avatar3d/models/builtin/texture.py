"""Procedural albedo of the built-in head, painted in 3-D and baked into the UV atlas.

Every texel is mapped back to its surface point (UV-space rasterisation with OpenCV) and coloured
from anatomy: skin with low-frequency variation and redder cheeks/ears/nose, lips, eyebrows, short
hair on the scalp, sclera/iris/pupil on the eyeballs, and a dark mouth interior with a hint of teeth.
Image rows go top-down; UV v = 0 is the bottom row (OBJ convention).
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .assemble import PART_IDS, Assembly

SIZE = 1024

SKIN = np.array([222, 170, 138], float)
LIPS = np.array([178, 98, 92], float)
BROW = np.array([62, 44, 34], float)
HAIR = np.array([58, 42, 32], float)
SCLERA = np.array([236, 232, 226], float)
IRIS = np.array([96, 68, 46], float)
MOUTH = np.array([110, 40, 44], float)
TEETH = np.array([232, 226, 210], float)


def _rasterize_ids(uvs: np.ndarray, uv_faces: np.ndarray, size: int) -> np.ndarray:
    """(size, size) int32 image of the triangle index covering each texel (-1 where none)."""
    import cv2

    ids = np.full((size, size), -1, np.int32)
    px = np.stack([uvs[:, 0] * size - 0.5, (1 - uvs[:, 1]) * size - 0.5], 1)
    pts = np.round(px * 16).astype(np.int32)  # 4 fractional bits for sub-pixel accuracy
    for f, tri in enumerate(uv_faces):
        cv2.fillConvexPoly(ids, pts[tri], int(f), lineType=cv2.LINE_8, shift=4)
    return ids


def _bary(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-18, 1e-18, den)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    # Texels on a triangle's rim may lie slightly outside it: clamp, then renormalise so the
    # interpolated point stays on the triangle (an unnormalised sum would scale the position).
    b = np.clip(np.stack([1 - v - w, v, w], 1), 0, 1)
    return b / np.maximum(b.sum(1, keepdims=True), 1e-12)


def _noise(p: np.ndarray, seed: int, scale: float) -> np.ndarray:
    """Smooth deterministic value in [-1, 1] from a sum of random plane waves (p in metres)."""
    rng = np.random.default_rng(seed)
    k = (rng.normal(size=(8, 3)) / scale).astype(np.float32)
    ph = rng.uniform(0, 2 * np.pi, 8).astype(np.float32)
    # float32: this runs on ~10^6 texels several times, and the precision is irrelevant for colour noise
    return np.sin(p.astype(np.float32) @ k.T + ph).mean(1).astype(np.float64) * np.sqrt(2)


def _s(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def hairline_y(P: np.ndarray, A: Anatomy) -> np.ndarray:
    """(N,) height of the hairline above/behind points P: high on the forehead, dipping at the
    temples, down behind the ears to the nape."""
    c = np.array(A.ray_center)
    aaz = np.abs(np.arctan2(P[:, 0] - c[0], P[:, 2] - c[2]))
    return np.where(aaz < 1.2, 0.075 - 0.035 * _s((aaz - 0.35) / 0.8), 0.04 - 0.09 * _s((aaz - 1.45) / 0.5))


def paint(asm: Assembly, A: Anatomy, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8 albedo for ``asm``'s UV atlas."""
    ids = _rasterize_ids(asm.uvs, asm.uv_faces, size)
    yy, xx = np.nonzero(ids >= 0)
    f = ids[yy, xx]
    uvp = np.stack([(xx + 0.5) / size, 1 - (yy + 0.5) / size], 1)
    t = asm.uvs[asm.uv_faces[f]]
    b = _bary(uvp, t[:, 0], t[:, 1], t[:, 2])
    P = (asm.vertices[asm.faces[f]] * b[..., None]).sum(1)
    part = asm.part[asm.faces[f]].max(1)  # bag faces touching the lip loop belong to the bag
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    ax = np.abs(x)
    col = np.tile(SKIN, (len(P), 1))
    col *= (1 + 0.035 * _noise(P, 1, 0.02) + 0.015 * _noise(P, 2, 0.004))[:, None]
    # Redder cheeks, nose tip, ears; slightly darker, cooler neck.
    red = np.array([1.04, 0.93, 0.92])
    cheek = np.exp(-(((ax - 0.042) / 0.018) ** 2 + ((y + 0.03) / 0.02) ** 2)) * (z > 0.03)
    nose = np.exp(-((ax / 0.012) ** 2 + ((y - A.nose_tip[1]) / 0.012) ** 2)) * (z > 0.09)
    earm = (part == PART_IDS["ear_left"]) | (part == PART_IDS["ear_right"])
    k = np.clip(0.6 * cheek + 0.5 * nose + 0.5 * earm, 0, 1)[:, None]
    col = col * (1 - k) + col * red * k
    col *= (1 - 0.08 * _s((-0.11 - y) / 0.05))[:, None]
    # Nostrils: dark openings under the nose (the geometry only has shallow dents).
    nostril = np.exp(-(((ax - 0.0068) / 0.0032) ** 2 + ((y + 0.0385) / 0.0022) ** 2 + ((z - 0.1035) / 0.006) ** 2))
    col *= (1 - 0.65 * nostril * (part == PART_IDS["head"]))[:, None]
    # Lips: inside the lip outline around the contact line.
    lx = np.clip(ax / A.mouth_half_width, 0, 1.0)
    beyond = ax < 1.02 * A.mouth_half_width
    mline = A.mouth_line(np.clip(x, -A.mouth_half_width, A.mouth_half_width))
    dy = y - mline[:, 1]
    upper_h = 0.0075 * (1 - lx**2) ** 0.5 * (1 - 0.25 * np.exp(-((ax / 0.004) ** 2)))  # Cupid's bow dip
    lower_h = 0.0095 * (1 - lx**2) ** 0.5
    inside = np.where(dy > 0, dy / np.maximum(upper_h, 1e-6), -dy / np.maximum(lower_h, 1e-6))
    lip = _s((1.15 - inside) / 0.3) * beyond * (z > A.mouth_z - 0.03) * (part == PART_IDS["head"])
    col = col * (1 - lip[:, None]) + LIPS * lip[:, None]
    # Eyebrows: an arch above each eye, thicker medially, with a hairy-looking broken edge.
    ey = A.eye_center[1]
    ex = A.eye_center[0]
    u = (ax - (ex - 0.021)) / 0.040  # 0 at the inner end, 1 at the tail
    arch = ey + 0.0150 + 0.0050 * np.sin(np.clip(u, 0, 1) * np.pi * 0.85)
    thick = 0.0058 * (1 - 0.5 * np.clip(u, 0, 1))
    brow = _s((thick - np.abs(y - arch)) / 0.0015 + 0.3 * _noise(P, 3, 0.0012)) * _s(u / 0.08) * _s((1.05 - u) / 0.1) * (z > 0.04)
    brow *= part == PART_IDS["head"]
    col = col * (1 - 0.85 * brow[:, None]) + BROW * 0.85 * brow[:, None]
    # Short hair on the scalp: above a hairline that is high on the forehead and dips at the temples,
    # going down behind the ears to the nape.
    hair = _s((y - hairline_y(P, A)) / 0.006 + 0.55 * _noise(P, 4, 0.0015) + 0.35 * _noise(P, 6, 0.005)) * (part == PART_IDS["head"])
    col = col * (1 - 0.92 * hair[:, None]) + HAIR * (0.92 + 0.08 * _noise(P, 5, 0.001))[:, None] * hair[:, None]
    # Eyeballs: angle from the front pole decides sclera / limbus / iris / pupil.
    for name, side in (("eye_left", 1), ("eye_right", -1)):
        m = part == PART_IDS[name]
        if not m.any():
            continue
        q = P[m] - A.eye(side)
        ang = np.arccos(np.clip(q[:, 2] / np.linalg.norm(q, axis=1), -1, 1))
        e = np.tile(SCLERA, (m.sum(), 1))
        e = e * (1 - 0.25 * _s((ang - 0.9) / 0.6))[:, None] + np.array([200, 120, 110]) * 0.25 * _s((ang - 0.9) / 0.6)[:, None]
        iris = _s((0.47 - ang) / 0.03)
        streak = 1 + 0.25 * np.sin(np.arctan2(q[:, 1], q[:, 0]) * 23)
        e = e * (1 - iris[:, None]) + IRIS[None] * ((0.75 + 0.4 * ang / 0.47) * streak)[:, None] * iris[:, None]
        limbus = np.exp(-(((ang - 0.46) / 0.03) ** 2))
        e *= (1 - 0.45 * limbus)[:, None]
        pupil = _s((0.19 - ang) / 0.02)
        e = e * (1 - pupil[:, None]) + np.array([12, 10, 10]) * pupil[:, None]
        col[m] = e
    # Mouth interior: dark red, a band of teeth just inside the lips.
    mb = part == PART_IDS["bag"]
    if mb.any():
        depth = np.clip((A.mouth_z - z[mb]) / 0.05, 0, 1)
        # Inner lips (wet, pink) right behind the lip line, then a row of teeth, then the dark cavity.
        inner = _s((0.16 - depth) / 0.05)
        teeth = _s((depth - 0.22) / 0.04) * _s((0.50 - depth) / 0.05) * _s((0.024 - np.abs(x[mb])) / 0.004)
        mc = MOUTH * (1 - 0.6 * depth)[:, None]
        mc = mc * (1 - inner[:, None]) + LIPS * 0.9 * inner[:, None]
        col[mb] = mc * (1 - teeth[:, None]) + TEETH * teeth[:, None]
    for name, sgn in (("teeth_upper", 1.0), ("teeth_lower", -1.0)):
        m = part == PART_IDS[name]
        if m.any():
            # Enamel with gaps between teeth, gum towards the root, darker towards the back.
            gum = _s((sgn * (y[m] - A.mouth_y) - 0.0068) / 0.0015)
            ang = np.arctan2(x[m], z[m] - (A.mouth_z - 0.04))
            gap = 1 - 0.25 * np.exp(-((np.sin(ang * 11.0)) ** 2) / 0.02)
            back = 1 - 0.5 * _s((A.mouth_z - 0.016 - z[m]) / 0.02)
            tc = TEETH * (gap * back)[:, None]
            col[m] = tc * (1 - gum[:, None]) + np.array([190, 95, 100]) * back[:, None] * gum[:, None]
    img = np.zeros((size, size, 3), np.float32)
    img[yy, xx] = np.clip(col, 0, 255)
    # Pad islands outward so bilinear lookups near seams never pick up the empty background.
    import cv2

    filled = (ids >= 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(6):
        gm = cv2.dilate(filled, kernel)
        newm = (gm > 0) & (filled == 0)
        # Average of filled neighbours = box-filter(img) / box-filter(mask).
        s = cv2.blur(img * filled[..., None], (3, 3))
        n = cv2.blur(filled.astype(np.float32), (3, 3))
        img[newm] = s[newm] / np.maximum(n[newm, None], 1e-6)
        filled = np.maximum(filled, newm.astype(np.uint8))
    img[filled == 0] = SKIN
    return np.clip(img, 0, 255).astype(np.uint8)

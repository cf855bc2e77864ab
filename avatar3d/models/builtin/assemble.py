"""Put the parts together: skin grid + eyeballs + ears + mouth bag, one mesh with a UV atlas.

UV atlas (origin bottom-left, like OBJ): the skin takes the top band v in [0.366, 1] (azimuth
across, elevation up, both through the same density maps as the grid so the face gets most texels
at roughly equal aspect); the bottom band holds the eyeballs, the ears (front and back islands) and
the mouth interior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import features as ft
from .anatomy import Anatomy
from .shape import N_COLS, N_ROWS, GridSurface, azimuth_density, build_grid, elevation_density, head_sdf

HEAD_V0 = 0.366  #: bottom of the skin island in the atlas

#: (u0, v0, size) of each part's unit square in the atlas.
ATLAS = {
    "eye_left": (0.005, 0.185, 0.17),
    "eye_right": (0.180, 0.185, 0.17),
    "bag": (0.005, 0.005, 0.17),
    "ear_left": (0.360, 0.010, 0.32),
    "ear_right": (0.680, 0.010, 0.32),
    "teeth_upper": (0.180, 0.005, 0.17),
    "teeth_lower": (0.180, 0.005, 0.17),
}

PART_IDS = {"head": 0, "eye_left": 1, "eye_right": 2, "ear_left": 3, "ear_right": 4, "bag": 5, "teeth_upper": 6, "teeth_lower": 7}


@dataclass
class Assembly:
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    uvs: np.ndarray  # (T, 2)
    uv_faces: np.ndarray  # (F, 3)
    part: np.ndarray  # (V,) int, see PART_IDS
    grid: GridSurface
    bag_depth: np.ndarray  # (V,) 0 at the lips .. 1 at the back of the mouth bag (0 elsewhere)
    bag_lower: np.ndarray  # (V,) bool, bag vertices on the lower-jaw side
    loop: np.ndarray  # (N,) vertex indices of the lip-opening loop
    extras: dict = field(default_factory=dict)


def _head_x(A: Anatomy, y: float, z: float) -> float:
    """X of the skin surface on the horizontal line through (y, z), found by bisection."""
    lo, hi = 0.0, 0.2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if head_sdf(np.array([[mid, y, z]]), A)[0] < 0:
            lo = mid
        else:
            hi = mid
    return lo


def _skin_uvs(g: GridSurface) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner UVs of the skin faces (seam at the back, per-face UVs at the crown pole)."""
    xa, ca = azimuth_density()  # the grid's own spacing: texels follow the vertex density
    xe, ce = elevation_density()
    u = np.interp(g.az, xa, ca) / ca[-1]  # (R, C)
    v = HEAD_V0 + (1 - HEAD_V0) * np.interp(g.el, xe, ce) / ce[-1]
    R, C = N_ROWS, N_COLS
    # UV grid with one extra column (u = 1) so the seam quads do not wrap across the atlas.
    U = np.concatenate([u, np.ones((R, 1))], 1)
    Vv = np.concatenate([v, v[:, :1]], 1)
    uv = np.stack([U, Vv], -1).reshape(-1, 2)
    pole0 = len(uv)
    ucol = (U[-1, :-1] + U[-1, 1:]) / 2
    uv = np.concatenate([uv, np.stack([ucol, np.full(C, 1.0)], 1)])
    return uv, pole0


def assemble(A: Anatomy) -> Assembly:
    g = build_grid(A)
    R, C = N_ROWS, N_COLS
    verts = [g.vertices]
    parts = [np.zeros(len(g.vertices), int)]
    # --- skin UVs: map each face corner to the (C+1)-column UV grid.
    skin_uv, pole_uv0 = _skin_uvs(g)
    f = g.faces
    r_, c_ = f // C, f % C
    pole = R * C
    uvf = r_ * (C + 1) + c_
    # Corners on column 0 of a quad that wraps (its other corners are on column C-1) use the u = 1 copy.
    wraps = (c_ == 0) & ((c_ == C - 1).any(1, keepdims=True))
    uvf = np.where(wraps, r_ * (C + 1) + C, uvf)
    is_pole = f == pole
    if is_pole.any():
        rows = np.flatnonzero(is_pole.any(1))
        for i in rows:
            cmin = min(int(c) for c, p in zip(c_[i], is_pole[i]) if not p)
            cc = int(c_[i][~is_pole[i]].max()) if cmin == 0 and (c_[i][~is_pole[i]] == C - 1).any() else cmin
            uvf[i][is_pole[i]] = pole_uv0 + cc
    faces = [f]
    uv_faces = [uvf]
    uvs = [skin_uv]
    n_v, n_t = len(g.vertices), len(skin_uv)

    def add(part: ft.Part, name: str):
        nonlocal n_v, n_t
        u0, v0, sz = ATLAS[name]
        verts.append(part.vertices)
        parts.append(np.full(len(part.vertices), PART_IDS[name]))
        faces.append(part.faces + n_v)
        uvs.append(np.array([u0, v0]) + part.uvs * sz)
        uv_faces.append(part.uv_faces + n_t)
        n_v += len(part.vertices)
        n_t += len(part.uvs)

    add(ft.eyeball(A.eye(1), A.eye_radius), "eye_left")
    add(ft.eyeball(A.eye(-1), A.eye_radius), "eye_right")
    ey, ez = A.ear_root[1] + 0.004, A.ear_root[2] - 0.004
    hx = _head_x(A, ey, ez)
    add(ft.ear(A, 1, hx), "ear_left")
    add(ft.ear(A, -1, hx), "ear_right")

    # --- mouth bag behind the lip opening.
    rl, ru = g.mouth_rows
    c0, c1 = g.mouth_cols
    lower_idx = [rl * C + c for c in range(c0, c1 + 1)]
    upper_idx = [ru * C + c for c in range(c1, c0 - 1, -1)]
    loop = np.array(lower_idx + upper_idx)
    lower = np.array([True] * len(lower_idx) + [False] * len(upper_idx))
    bag_v, bag_t, bag_x = ft.mouth_bag(g.vertices[loop], lower, A)
    N = len(loop)
    bag0 = n_v
    verts.append(bag_v)
    parts.append(np.full(len(bag_v), PART_IDS["bag"]))
    ring = lambda k, i: loop[i % N] if k == 0 else bag0 + (k - 1) * N + i % N  # noqa: E731
    bf = []
    for k in range(ft.BAG_RINGS):
        for i in range(N):
            a, b, c, d = ring(k, i), ring(k, i + 1), ring(k + 1, i + 1), ring(k + 1, i)
            bf += [(a, b, c), (a, c, d)]
    end = bag0 + ft.BAG_RINGS * N
    for i in range(N):
        bf.append((ring(ft.BAG_RINGS, i), ring(ft.BAG_RINGS, i + 1), end))
    bf = np.array(bf)
    # The skin uses each loop edge once; the bag must use it in the opposite direction.
    skin_edges = {(int(a), int(b)) for tri in f for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))}
    if (int(loop[0]), int(loop[1])) in skin_edges:
        pass  # bag faces (loop[i], loop[i+1], ...) would repeat the skin's direction: flip below
        bf = bf[:, ::-1].copy()
    faces.append(bf)
    # Bag UVs: a cylinder map, around the lip loop across (seam column duplicated), depth up.
    u0, v0, sz = ATLAS["bag"]
    bag_uv0 = n_t
    cu = np.arange(N + 1) / N
    rows_v = 0.02 + 0.9 * np.arange(ft.BAG_RINGS + 1) / ft.BAG_RINGS
    g_uv = np.stack(np.meshgrid(cu, rows_v, indexing="xy"), -1).reshape(-1, 2)  # ring-major, N+1 per ring
    apex = np.stack([(np.arange(N) + 0.5) / N, np.full(N, 0.99)], 1)
    uvs.append(np.array([u0, v0]) + np.concatenate([g_uv, apex]) * sz)
    uring = lambda k, i: bag_uv0 + k * (N + 1) + i  # noqa: E731  (i in 0..N, no wrap)
    apex0 = bag_uv0 + (ft.BAG_RINGS + 1) * (N + 1)
    bu_f = []
    for k in range(ft.BAG_RINGS):
        for i in range(N):
            a, b, c, d = uring(k, i), uring(k, i + 1), uring(k + 1, i + 1), uring(k + 1, i)
            bu_f += [(a, b, c), (a, c, d)]
    for i in range(N):
        bu_f.append((uring(ft.BAG_RINGS, i), uring(ft.BAG_RINGS, i + 1), apex0 + i))
    bu_f = np.array(bu_f)
    if bf[0, 0] != ring(0, 0):  # flipped above: flip the UV triangles too and mirror u so the map is not mirrored
        bu_f = bu_f[:, ::-1].copy()
        uvs[-1][:, 0] = 2 * u0 + sz - uvs[-1][:, 0]
    uv_faces.append(bu_f)
    n_v += len(bag_v)
    n_t += len(uvs[-1])
    add(ft.teeth(A, upper=True), "teeth_upper")
    add(ft.teeth(A, upper=False), "teeth_lower")

    V = np.concatenate(verts)
    part = np.concatenate(parts)
    bag_depth = np.zeros(len(V))
    bag_depth[bag0 : bag0 + len(bag_v)] = bag_t
    bag_lower = np.zeros(len(V), bool)
    bag_lower[bag0 : bag0 + len(bag_v)] = np.concatenate([np.tile(lower, ft.BAG_RINGS), [True]])
    return Assembly(V, np.concatenate(faces).astype(np.int64), np.concatenate(uvs), np.concatenate(uv_faces).astype(np.int64), part, g, bag_depth, bag_lower, loop)

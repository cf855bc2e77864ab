"""The base surface: a head-and-neck signed-distance field sampled on a warped (azimuth, elevation) grid.

The skin is star-shaped around ``Anatomy.ray_center``: every grid vertex is the outermost crossing
of the SDF along one ray from there. Grid density is higher on the face, and the grid is warped so
that two rows become each eyelid margin and two rows become the lip contact line; the quads between
those rows are left out, which makes the eye and mouth openings without any remeshing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import sdf
from .anatomy import Anatomy

N_COLS = 120  #: columns around the head (azimuth); the UV seam is at the back (azimuth = +-pi)
N_ROWS = 92  #: rows from the neck cut up to just below the crown (a pole vertex closes the top)
EL_TOP = np.deg2rad(86.0)


def head_sdf(p: np.ndarray, A: Anatomy) -> np.ndarray:
    """(N,) signed distance (metres) of the skin of head + neck, without ears and eyeballs."""
    x = p
    ax = np.abs(p[:, 0])
    pm = np.stack([ax, p[:, 1], p[:, 2]], 1)  # mirrored: features defined for the left side only
    top = A.crown_y
    # Cranium: a broad vault whose widest point (the parietal eminences) sits above the ears, plus
    # a flatter parietal cap so the top reads round-boxy from the front rather than egg-pointed.
    d = sdf.ellipsoid(x, (0, top - 0.095, -0.016), (0.0775, 0.092, 0.089))
    d = sdf.smin(d, sdf.ellipsoid(x, (0, top - 0.058, -0.022), (0.064, 0.050, 0.064)), 0.025)
    # Occiput: the back of the skull bulges behind and below the vault, over the nape.
    d = sdf.smin(d, sdf.ellipsoid(x, (0, 0.008, -0.044), (0.062, 0.056, 0.059)), 0.02)
    # Face mass (maxilla / mid-face) and forehead front.
    d = sdf.smin(d, sdf.ellipsoid(x, (0, -0.016, 0.029), (0.058, 0.060, 0.062)), 0.02)
    d = sdf.smin(d, sdf.ellipsoid(x, (0, 0.045, 0.038), (0.064, 0.052, 0.052)), 0.015)
    # Temples: fill the hollow between the vault and the cheekbones.
    d = sdf.smin(d, sdf.ellipsoid(pm, (0.052, 0.022, 0.030), (0.020, 0.030, 0.030)), 0.02)
    # Brow ridge.
    d = sdf.smin(d, sdf.capsule(pm, (0.0, 0.029, 0.078), (0.040, 0.028, 0.066), 0.0105, 0.008), 0.012)
    # Cheekbones and cheeks.
    d = sdf.smin(d, sdf.ellipsoid(pm, (0.046, -0.006, 0.055), (0.020, 0.016, 0.022)), 0.016)
    d = sdf.smin(d, sdf.ellipsoid(pm, (0.032, -0.028, 0.058), (0.018, 0.019, 0.019)), 0.018)
    # Cheek fat pad: fills the hollow under the cheekbone so the outline runs smoothly to the jaw.
    d = sdf.smin(d, sdf.ellipsoid(pm, (0.040, -0.030, 0.042), (0.022, 0.024, 0.024)), 0.02)
    # Buccal fill: smooths the face outline from the cheekbones down to the jaw (no jowl bumps).
    d = sdf.smin(d, sdf.ellipsoid(pm, (0.042, -0.045, 0.022), (0.020, 0.030, 0.032)), 0.02)
    # Mandible: ramus from the jaw angle (gonion) forward to the chin, and the chin itself.
    d = sdf.smin(d, sdf.capsule(pm, (0.049, -0.066, -0.004), (0.016, -0.090, 0.060), 0.008, 0.0085), 0.014)
    d = sdf.smin(d, sdf.ellipsoid(x, (0, -0.085, 0.075), (0.018, 0.016, 0.016)), 0.012)
    # Submental slope: the underside of the chin runs back and down into the throat.
    d = sdf.smin(d, sdf.capsule(x, (0, -0.089, 0.058), (0, -0.115, 0.030), 0.010, 0.012, scale=(2.2, 1, 1)), 0.015)
    # Lower face: one broad mass over the dental arches from the mouth corners to the chin, so
    # the cheeks, the mouth area and the chin read as one surface (no marionette creases).
    d = sdf.smin(d, sdf.ellipsoid(x, (0, -0.066, 0.050), (0.040, 0.033, 0.034)), 0.02)
    # Muzzle under the nose (orbicularis oris area); the philtrum, which runs from the subnasale straight
    # down-forward to the upper lip (no dent under the nose); the mentalis between lower lip and chin; the lips.
    d = sdf.smin(d, sdf.ellipsoid(x, (0, -0.058, 0.071), (0.028, 0.026, 0.022)), 0.014)
    d = sdf.smin(d, sdf.capsule(x, np.array(A.subnasale) + (0, -0.004, -0.006), (0, A.mouth_y + 0.008, A.mouth_z - 0.004), 0.006, 0.006, scale=(1.15, 1, 1)), 0.008)
    d = sdf.smin(d, sdf.ellipsoid(x, (0, -0.078, 0.072), (0.019, 0.013, 0.016)), 0.012)
    t = np.clip(ax / 0.026, 0, 1)
    up = sdf.ellipsoid(np.stack([ax, p[:, 1] - (A.mouth_y + 0.0042 - 0.002 * t**2), p[:, 2] - (A.mouth_z - 0.0025 - 0.017 * t**2.2)], 1), (0, 0, 0), (0.025, 0.0058, 0.0080))
    lo = sdf.ellipsoid(np.stack([ax, p[:, 1] - (A.mouth_y - 0.0055 + 0.003 * t**2), p[:, 2] - (A.mouth_z - 0.0040 - 0.017 * t**2.2)], 1), (0, 0, 0), (0.023, 0.0070, 0.0082))
    d = sdf.smin(d, up, 0.004)
    d = sdf.smin(d, lo, 0.004)
    # Nose: bridge, tip, alae, with a columella under the tip.
    nt = np.array(A.nose_tip)
    d = sdf.smin(d, sdf.capsule(x, (0, 0.020, 0.082), nt + (0, 0.004, -0.006), 0.0068, 0.0095, scale=(0.85, 1, 1)), 0.012)
    d = sdf.smin(d, sdf.sphere(x, nt + (0, 0.0, -0.005), 0.0092), 0.010)
    d = sdf.smin(d, sdf.ellipsoid(pm, (0.0100, -0.0315, 0.0955), (0.0072, 0.0062, 0.0100)), 0.013)
    d = sdf.smin(d, sdf.capsule(x, nt + (0, -0.004, -0.004), np.array(A.subnasale) + (0, 0.001, 0), 0.0042, 0.0045), 0.004)
    # Nostril hint: shallow dents on the underside of the nose.
    d = sdf.smax(d, -sdf.ellipsoid(pm, (0.0068, -0.0385, 0.1040), (0.0040, 0.0022, 0.0055)), 0.0015)
    # Eye sockets, then the eyelid shell around each eyeball.
    e = np.array(A.eye_center)
    d = sdf.smax(d, -sdf.ellipsoid(pm, e + (0.0, -0.001, 0.015), (0.019, 0.0115, 0.0095)), 0.014)
    d = sdf.smin(d, sdf.sphere(pm, e, A.lid_radius), 0.005)
    # Neck: an elliptic column blended under the skull that leans forward going up, widens a little
    # towards the cut (the trapezius / shoulder line) and ends in a vertical piece so the cut is a clean ellipse.
    rx, rz = A.neck_radii
    nz = A.neck_center_z
    neck = sdf.capsule(x, (0, -0.080, nz + 0.010), (0, A.neck_cut_y, nz), 0.90, 1.0, scale=(rx, 0.05, rz))
    neck = np.minimum(neck, sdf.capsule(x, (0, A.neck_cut_y, nz), (0, A.neck_cut_y - 0.08, nz), 1.0, scale=(rx, 0.05, rz)))
    d = sdf.smin(d, neck, 0.025)
    # Sternocleidomastoid hint and a slight Adam's-apple/larynx bulge.
    d = sdf.smin(d, sdf.capsule(pm, (0.042, -0.045, -0.022), (0.020, A.neck_cut_y, nz + rz - 0.016), 0.010), 0.02)
    d = sdf.smin(d, sdf.ellipsoid(x, (0, -0.130, 0.027), (0.011, 0.014, 0.010)), 0.012)
    return d


@dataclass
class GridSurface:
    """The sampled skin. Rows go from the neck cut (row 0) up; columns go around from the back."""

    vertices: np.ndarray  # (N_ROWS * N_COLS + 1, 3); the last vertex is the crown pole
    az: np.ndarray  # (N_ROWS, N_COLS) azimuth of each grid vertex (0 = front, +X = +pi/2)
    el: np.ndarray  # (N_ROWS, N_COLS) elevation of each grid vertex from the ray centre
    faces: np.ndarray  # (F, 3) outward-oriented triangles
    eye_rows: tuple  # (lower-lid row, upper-lid row)
    mouth_rows: tuple  # (lower-lip row, upper-lip row)
    eye_cols: dict  # side -> (first, last) column index inside each eye opening
    mouth_cols: tuple  # (first, last) column inside the mouth opening

    def index(self, r, c):
        return np.asarray(r) * N_COLS + np.asarray(c) % N_COLS


def _cumulative(w_fn, lo: float, hi: float, n: int = 4000):
    xs = np.linspace(lo, hi, n)
    w = w_fn(xs)
    cum = np.concatenate([[0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(xs))])
    return xs, cum


def azimuth_density() -> tuple[np.ndarray, np.ndarray]:
    """(4000,) azimuths over [-pi, pi] and the cumulative grid density at them (columns are denser over the face)."""
    return _cumulative(lambda a: 1.0 + 2.6 * np.exp(-((a / 0.72) ** 2)), -np.pi, np.pi)


def elevation_density() -> tuple[np.ndarray, np.ndarray]:
    """(4000,) elevations over [-pi/2, pi/2] and the cumulative grid density at them (rows are denser over the face)."""
    return _cumulative(lambda e: 1.0 + 2.4 * np.exp(-(((e + 0.12) / 0.62) ** 2)), -np.pi / 2, np.pi / 2)


def _az_columns() -> np.ndarray:
    """(N_COLS,) azimuths, denser over the face; column 0 sits at the back (-pi)."""
    xs, cum = azimuth_density()
    targets = np.linspace(0, cum[-1], N_COLS + 1)[:-1]
    return np.interp(targets, cum, xs)


def _dir(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    ce = np.cos(el)
    return np.stack([ce * np.sin(az), np.sin(el), ce * np.cos(az)], -1)


def _az_el(p: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = p - c
    return np.arctan2(q[:, 0], q[:, 2]), np.arctan2(q[:, 1], np.hypot(q[:, 0], q[:, 2]))


def march(dirs: np.ndarray, A: Anatomy, t_max: float = 0.32, step: float = 0.003) -> np.ndarray:
    """(N,) distance along each unit ray from the ray centre to the outermost SDF crossing."""
    c = np.array(A.ray_center)
    n = len(dirs)
    ts = np.arange(t_max, 0.0, -step)
    hit_hi = np.full(n, np.nan)
    # Rays that do not point down the neck start closer in (the head fits in a 0.17 m ball around
    # the ray centre; the neck reaches 0.25 m): a 2x saving on the walk.
    t_start = 0.17 + 0.09 * np.clip(-dirs[:, 1], 0, 1)
    # Walk inward until first inside sample; the crossing is between that sample and the previous one.
    for t in ts:
        todo = np.isnan(hit_hi) & (t <= t_start)
        if not todo.any():
            continue
        dd = head_sdf(c + dirs[todo] * t, A)
        idx = np.flatnonzero(todo)[dd < 0]
        hit_hi[idx] = t
    lo, hi = hit_hi, hit_hi + step  # lo inside, hi outside
    for _ in range(18):
        mid = 0.5 * (lo + hi)
        inside = head_sdf(c + dirs * mid[:, None], A) < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return 0.5 * (lo + hi)


def _row_targets(el_col: np.ndarray, row_lo: int, target_lo: np.ndarray, target_hi: np.ndarray, blend: np.ndarray, K: int = 7) -> np.ndarray:
    """Warp elevations of every column so rows row_lo / row_lo+1 land on targets (blended per column).

    A piecewise-linear monotone remap between anchor rows row_lo-K and row_lo+1+K keeps rows ordered.
    """
    out = el_col.copy()
    a0, a1 = row_lo - K, row_lo + 1 + K
    for c in range(el_col.shape[1]):
        if blend[c] <= 0:
            continue
        src = [a0, row_lo, row_lo + 1, a1]
        tgt_lo = (1 - blend[c]) * el_col[row_lo, c] + blend[c] * target_lo[c]
        tgt_hi = (1 - blend[c]) * el_col[row_lo + 1, c] + blend[c] * target_hi[c]
        vals = [el_col[a0, c], tgt_lo, tgt_hi, el_col[a1, c]]
        rows = np.arange(a0, a1 + 1)
        out[a0 : a1 + 1, c] = np.interp(rows, src, vals)
    return out


def sdf_and_gradient(p: np.ndarray, A: Anatomy, h: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(N,) distance and (N, 3) unit gradient of :func:`head_sdf` (forward differences)."""
    d = head_sdf(p, A)
    g = np.stack([head_sdf(p + e, A) - d for e in np.eye(3) * h], 1)
    return d, g / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-12)


def relax(verts: np.ndarray, faces: np.ndarray, fixed: np.ndarray, A: Anatomy, iters: int = 6, step: float = 0.5) -> np.ndarray:
    """Even out triangles where rays graze the surface (nose wings, brow, mouth corners).

    Star-shaped sampling leaves long thin triangles where the surface turns away from the ray
    centre. A few steps of tangential Laplacian smoothing, each followed by projection back onto
    the SDF (Newton steps along the gradient), spread those vertices over the surface.
    """
    import scipy.sparse as sp

    n = len(verts)
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adj = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(1)).ravel()
    v = verts.copy()
    free = ~fixed
    _, nrm = sdf_and_gradient(v[free], A)
    for _ in range(iters):
        lap = adj @ v / deg[:, None] - v
        lt = lap[free] - (lap[free] * nrm).sum(1, keepdims=True) * nrm
        p = v[free] + step * lt
        d, nrm = sdf_and_gradient(p, A)
        v[free] = p - d[:, None] * nrm  # one Newton step: the tangential move is small
    d, nrm = sdf_and_gradient(v[free], A)
    v[free] -= d[:, None] * nrm
    return v


def build_grid(A: Anatomy) -> GridSurface:
    """Sample the skin on the warped grid and triangulate it (openings left out)."""
    c = np.array(A.ray_center)
    az = _az_columns()
    # Bottom row: rays that hit the neck-cut ellipse exactly.
    rx, rz = A.neck_radii
    sa, ca = np.sin(az), np.cos(az)
    dz0 = A.neck_center_z - c[2]
    # Solve |(t*sa)/rx|^2 + |(t*ca - dz0)/rz|^2 = 1 for the horizontal distance t > 0.
    qa = (sa / rx) ** 2 + (ca / rz) ** 2
    qb = -2 * ca * dz0 / rz**2
    qc = (dz0 / rz) ** 2 - 1
    rho = (-qb + np.sqrt(qb**2 - 4 * qa * qc)) / (2 * qa)
    el_min = np.arctan2(A.neck_cut_y - c[1], rho)
    xs, cum = elevation_density()
    c_min = np.interp(el_min, xs, cum)
    c_top = np.interp(EL_TOP, xs, cum)
    s = np.linspace(0, 1, N_ROWS)[:, None]
    el = np.interp(c_min[None] + s * (c_top - c_min[None]), cum, xs)  # (R, C)

    # --- eyelid and lip rows: warp the grid so openings follow the anatomy.
    eye_cols = {}
    e_az, e_el = _az_el(A.eye(1)[None], c)
    col_e = int(np.argmin(np.abs(az - e_az[0])))
    r_e = int(np.argmin(np.abs(el[:, col_e] - e_el[0])))
    eye_rows = (r_e, r_e + 1)
    for side in (1, -1):
        ec = A.eye(side)
        xs_e = np.linspace(-1, 1, 41)
        # Almond: the upper lid peaks a bit medially... lids lie on the lid sphere.
        hu = A.eye_open_up * (1 - xs_e**2) ** 0.8 * (1 + 0.15 * xs_e * side)
        hd = A.eye_open_down * (1 - xs_e**2) ** 1.0
        px = ec[0] + xs_e * A.eye_half_width
        tilt = 0.0012 * xs_e * side  # outer corner slightly higher (canthal tilt)
        def on_lid(y):
            dx, dy = px - ec[0], y - ec[1]
            dz = np.sqrt(np.maximum(A.lid_radius**2 - dx**2 - dy**2, 1e-10))
            return np.stack([px, y, ec[2] + dz], 1)
        up = on_lid(ec[1] + tilt + hu + 0.0004)
        lo = on_lid(ec[1] + tilt - hd - 0.0004)
        az_u, el_u = _az_el(up, c)
        az_l, el_l = _az_el(lo, c)
        order = np.argsort(az_u)
        tu = np.interp(az, az_u[order], el_u[order])
        order = np.argsort(az_l)
        tl = np.interp(az, az_l[order], el_l[order])
        a_lo, a_hi = min(az_u.min(), az_l.min()), max(az_u.max(), az_l.max())
        width = a_hi - a_lo
        dist = np.maximum(0, np.maximum(a_lo - az, az - a_hi)) / (0.6 * width)
        blend = np.clip(1 - dist, 0, 1) ** 2 * (3 - 2 * np.clip(1 - dist, 0, 1))
        # Outside the almond the two rows keep a small gap so corner triangles stay non-degenerate.
        mid = 0.5 * (tu + tl)
        gap = 0.25 * (el[r_e + 1] - el[r_e])
        tu = np.where((az > a_lo) & (az < a_hi), tu, mid + gap)
        tl = np.where((az > a_lo) & (az < a_hi), tl, mid - gap)
        tu, tl = np.maximum(tu, mid + gap), np.minimum(tl, mid - gap)
        el = _row_targets(el, r_e, tl, tu, blend)
        inside = np.flatnonzero((az > a_lo) & (az < a_hi))
        eye_cols[side] = (int(inside.min()), int(inside.max()))

    _, m_el = _az_el(A.mouth_line(np.zeros(1)), c)
    r_m = int(np.argmin(np.abs(el[:, int(np.argmin(np.abs(az)))] - m_el[0])))
    mx = np.linspace(-A.mouth_half_width, A.mouth_half_width, 61)
    ml = A.mouth_line(mx)
    maz, mel = _az_el(ml, c)
    t_mid = np.interp(az, maz, mel)
    a_lo, a_hi = maz.min(), maz.max()
    dist = np.maximum(0, np.maximum(a_lo - az, az - a_hi)) / (0.5 * (a_hi - a_lo))
    b = np.clip(1 - dist, 0, 1)
    blend = b * b * (3 - 2 * b)
    # Lips touch at rest: the two rows are 0.15 mm apart in elevation inside the mouth.
    gap_in = 0.0008
    gap_out = 0.3 * (el[r_m + 1] - el[r_m])
    ins = (az > a_lo) & (az < a_hi)
    el = _row_targets(el, r_m, np.where(ins, t_mid - gap_in, t_mid - gap_out), np.where(ins, t_mid + gap_in, t_mid + gap_out), blend)
    inside = np.flatnonzero(ins)
    mouth_cols = (int(inside.min()), int(inside.max()))

    # --- sample the surface.
    dirs = _dir(az[None].repeat(N_ROWS, 0), el).reshape(-1, 3)
    t = march(dirs, A)
    verts = c + dirs * t[:, None]
    # Bottom row exactly on the cut plane (the ray hits the cut's rim).
    verts[:N_COLS, 1] = A.neck_cut_y
    top = march(np.array([[0.0, 1.0, 0.0]]), A)
    verts = np.concatenate([verts, c + np.array([[0, 1.0, 0]]) * top[:, None]])

    faces = []
    R, C = N_ROWS, N_COLS
    skip = set()
    for side, (c0, c1) in eye_cols.items():
        for cc in range(c0, c1):
            skip.add((r_e, cc))
    for cc in range(mouth_cols[0], mouth_cols[1]):
        skip.add((r_m, cc))
    for r in range(R - 1):
        for cc in range(C):
            if (r, cc) in skip:
                continue
            a, b2 = r * C + cc, r * C + (cc + 1) % C
            d, e = (r + 1) * C + cc, (r + 1) * C + (cc + 1) % C
            # Columns go towards +az (counter-clockwise seen from above) and rows go up: (a, b, e) faces outward.
            faces.append((a, b2, e))
            faces.append((a, e, d))
    pole = R * C
    for cc in range(C):
        faces.append(((R - 1) * C + cc, (R - 1) * C + (cc + 1) % C, pole))
    faces = np.array(faces, np.int64)
    az_g = np.broadcast_to(az, (R, C)).copy()
    fixed = np.zeros(len(verts), bool)
    fixed[:C] = True  # the neck cut stays a planar ellipse
    fixed[-1] = True
    for (c0, c1) in list(eye_cols.values()) + [mouth_cols]:
        for r in (eye_rows if (c0, c1) != mouth_cols else (r_m, r_m + 1)):
            fixed[r * C + np.arange(c0 - 1, c1 + 2)] = True  # opening rims keep their designed shape
    verts = relax(verts, faces, fixed, A)
    return GridSurface(verts, az_g, el, faces, eye_rows, (r_m, r_m + 1), eye_cols, mouth_cols)

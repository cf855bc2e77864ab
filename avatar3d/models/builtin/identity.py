"""Identity basis of the built-in head: named anatomical modes, then a smooth free-form space.

Every mode is a smooth 3-D displacement field scaled so that coefficient 1 is about one standard
deviation of adult variation (``shape_std`` = 1 for all modes): coefficients ~ N(0, 1) give
plausible heads. Eyeballs move rigidly with their centre; ears move rigidly with their root
(except the ear-size mode, which scales them about the root).

The last modes describe a resting face's soft tissue that the skull modes cannot: how far the
eyelids are open and how high the brows sit. Without them a person's narrower resting eyes or lower
brows could only be fitted with expressions (eyeBlink, browDown held at their bound through a neutral
video: a grimace when played back). They come after the free-form modes so that the coefficients
of older fits keep their meaning.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .assemble import PART_IDS, Assembly

STRUCTURED = [
    "head_width", "head_height", "head_depth", "face_length", "nose_length", "nose_width", "nose_bridge",
    "jaw_width", "chin", "cheekbones", "brow_ridge", "eye_spacing", "eye_height", "lip_fullness",
    "mouth_width", "ear_size", "neck_width",
]  # fmt: skip
#: resting soft-tissue modes, after the free-form ones (see the module docstring)
SOFT_TISSUE = ["eye_opening", "brow_height"]
N_FREE = 22
FREE_RMS = 0.0007  #: metres RMS over the skin per unit free-form coefficient


def _g(p: np.ndarray, c, r) -> np.ndarray:
    d = (p - np.asarray(c, float)) / np.asarray(r, float)
    return np.exp(-(d * d).sum(-1))


def _sym_g(p, c, r):
    c = np.asarray(c, float)
    return _g(p, c, r) + _g(p, c * [-1, 1, 1], r)


def _field(name: str, p: np.ndarray, A: Anatomy) -> np.ndarray:
    """(N, 3) displacement of structured mode ``name`` at points p (one standard deviation)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    d = np.zeros_like(p)
    sx = np.sign(x)
    below_neck = np.clip((y - A.neck_cut_y) / 0.08, 0, 1)  # keep the neck cut in place
    if name == "head_width":
        d[:, 0] = 0.045 * x * np.clip((y + 0.09) / 0.08, 0, 1)
    elif name == "head_height":
        d[:, 1] = 0.035 * np.maximum(y - 0.0, 0)
    elif name == "head_depth":
        d[:, 2] = 0.04 * np.minimum(z + 0.01, 0) * np.clip((y + 0.06) / 0.06, 0, 1)
    elif name == "face_length":
        # 3.5 % of the depth below the ear canal per std (~3.5 mm at the chin): face-height SD of adults.
        d[:, 1] = -0.035 * np.maximum(-y, 0) * np.clip((z + 0.02) / 0.05, 0, 1) * np.clip((y - A.neck_cut_y) / 0.1, 0, 1)
    elif name == "nose_length":
        g = _g(p, A.nose_tip, (0.016, 0.022, 0.03))
        d[:, 2] = 0.0035 * g
        d[:, 1] = -0.0015 * g
    elif name == "nose_width":
        d[:, 0] = 0.18 * x * _g(p, (0, -0.03, 0.1), (0.02, 0.015, 0.025))
    elif name == "nose_bridge":
        d[:, 2] = 0.0025 * _g(p, (0, 0.008, 0.095), (0.009, 0.018, 0.02))
    elif name == "jaw_width":
        d[:, 0] = 0.0045 * sx * _sym_g(p, (0.050, -0.060, 0.0), (0.025, 0.03, 0.04))
    elif name == "chin":
        g = _g(p, (0, -0.09, 0.075), (0.022, 0.02, 0.03))
        d[:, 2] = 0.0035 * g
        d[:, 1] = -0.0020 * g
    elif name == "cheekbones":
        g = _sym_g(p, (0.047, -0.005, 0.055), (0.02, 0.016, 0.025))
        d[:, 0] = 0.0030 * sx * g
        d[:, 2] = 0.0015 * g
    elif name == "brow_ridge":
        d[:, 2] = 0.0025 * _sym_g(p, (0.025, 0.032, 0.08), (0.022, 0.01, 0.02))
    elif name == "eye_spacing":
        d[:, 0] = 0.0025 * sx * _sym_g(p, A.eye(1), (0.016, 0.014, 0.03))
    elif name == "eye_height":
        d[:, 1] = 0.0025 * _sym_g(p, A.eye(1), (0.016, 0.014, 0.03))
    elif name == "lip_fullness":
        g = _g(p, (0, A.mouth_y, A.mouth_z), (0.026, 0.010, 0.015))
        d[:, 2] = 0.0015 * g
        d[:, 1] = 0.0012 * np.tanh((y - A.mouth_y) / 0.003) * g
    elif name == "mouth_width":
        d[:, 0] = 0.0030 * sx * _sym_g(p, A.mouth_line(np.array([A.mouth_half_width]))[0], (0.012, 0.012, 0.02))
    elif name == "neck_width":
        # Below the jaw only (~7 mm of neck breadth per std); the common fade below keeps the cut itself
        # unchanged so a body still attaches.
        w = np.clip((-0.07 - y) / 0.04, 0, 1)
        d[:, 0] = 0.06 * x * w
        d[:, 2] = 0.045 * (z - A.neck_center_z) * w
    elif name != "ear_size":
        raise KeyError(name)
    d *= below_neck[:, None]
    return d


def _soft_tissue(name: str, asm: Assembly, A: Anatomy) -> np.ndarray:
    """(V, 3) displacement of a :data:`SOFT_TISSUE` mode (one standard deviation); eyeballs stay put."""
    from .blendshapes import eyelid_weights, rotate_about

    V = asm.vertices
    d = np.zeros_like(V)
    skin = asm.part == PART_IDS["head"]
    if name == "eye_opening":
        # ~2.4 mm more palpebral aperture per std, mostly the upper lid: the resting lid gap MediaPipe
        # reports on the six shared videos spans 0.09-0.21 inter-ocular distances (SD ~0.04, ~2.5 mm).
        for side in (1, -1):
            up, lo = eyelid_weights(asm, A, side)
            d += rotate_about(V, A.eye(side), "x", -up * 0.140) + rotate_about(V, A.eye(side), "x", lo * 0.040)
    elif name == "brow_height":
        ey = A.eye_center[1]
        for side in (1, -1):  # the browDown / browOuterUp region, 4 mm up per std (brow-to-eye spread of the shared videos)
            g = _g(V, (side * 0.033, ey + 0.020, 0.078), (0.026, 0.016, 0.03)) * skin
            d[:, 1] += 0.0040 * g
    else:
        raise KeyError(name)
    return d


def _rigid_parts(asm: Assembly, field_fn, A: Anatomy) -> np.ndarray:
    """Evaluate a field on all vertices, but move eyeballs and ears rigidly with their anchor."""
    V = asm.vertices
    d = field_fn(V)
    for name, side in (("eye_left", 1), ("eye_right", -1)):
        ids = asm.part == PART_IDS[name]
        d[ids] = field_fn(A.eye(side)[None])[0]
    for name, side in (("ear_left", 1), ("ear_right", -1)):
        ids = asm.part == PART_IDS[name]
        root = np.array(A.ear_root) * [side, 1, 1]
        d[ids] = field_fn(root[None])[0]
    return d


def build_identity(asm: Assembly, A: Anatomy) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Returns shapedirs (V, 3, S), mode names (S,), shape_std (S,)."""
    modes, names = [], []
    for nm in STRUCTURED:
        if nm == "ear_size":
            d = np.zeros_like(asm.vertices)
            for part, side in (("ear_left", 1), ("ear_right", -1)):
                ids = asm.part == PART_IDS[part]
                root = np.array(A.ear_root) * [side, 1, 1]
                d[ids] = 0.10 * (asm.vertices[ids] - root)
        else:
            d = _rigid_parts(asm, lambda p, nm=nm: _field(nm, p, A), A)
        modes.append(d)
        names.append(nm)
    # Free-form: random (fixed seed) smooth vector fields from 40 Gaussian bumps each, Gram-Schmidt
    # orthogonalised against each other over the skin, then scaled to FREE_RMS.
    rng = np.random.default_rng(20240607)
    skin = asm.part == PART_IDS["head"]
    k = np.arange(40)
    golden = np.pi * (3 - np.sqrt(5))
    yy = 1 - 2 * (k + 0.5) / 40
    dirs = np.stack([np.sqrt(1 - yy**2) * np.cos(golden * k), yy * 0.9 - 0.1, np.sqrt(1 - yy**2) * np.sin(golden * k)], 1)
    centers = np.array(A.ray_center) + dirs * 0.1
    free: list[np.ndarray] = []
    # Evaluate the bump weights once on the vertices with eyes/ears replaced by their anchors (rigid parts).
    P = asm.vertices.copy()
    for name, anchor in (("eye_left", A.eye(1)), ("eye_right", A.eye(-1)), ("ear_left", np.array(A.ear_root)), ("ear_right", np.array(A.ear_root) * [-1, 1, 1])):
        P[asm.part == PART_IDS[name]] = anchor
    m = np.array([-1.0, 1.0, 1.0])
    fade = np.clip((P[:, 1:2] - A.neck_cut_y) / 0.08, 0, 1)
    Wp = _g(P[:, None, :], centers[None], 0.05) * fade  # (V, 40)
    Wm = _g((P * m)[:, None, :], centers[None], 0.05) * fade
    for _ in range(N_FREE):
        coef = rng.normal(size=(40, 3))
        # Mirror-symmetric (heads are nearly symmetric): average the field with its reflection in x = 0.
        d = 0.5 * (Wp @ coef + (Wm @ coef) * m)
        for f in free:
            d -= (d[skin] * f[skin]).sum() / (f[skin] * f[skin]).sum() * f
        d *= FREE_RMS / np.sqrt((d[skin] ** 2).sum(1).mean())
        free.append(d)
        names.append(f"free_{len(free):02d}")
    soft = [_soft_tissue(nm, asm, A) for nm in SOFT_TISSUE]
    names += SOFT_TISSUE
    basis = np.stack(modes + free + soft, -1)
    return basis, names, np.ones(len(names))

"""ARKit-named expression blendshapes of the built-in head (weights in [0, 1], displacements in metres).

Each shape is a smooth displacement field built from the anatomy: rotations about the TMJ and
the eyeball centres (jaw, eyelids) and Gaussian-weighted moves of lips, brows and cheeks. "Left"
is the subject's left (+X). The mouth bag follows the lips it hangs from.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .assemble import PART_IDS, Assembly
from .features import BAG_RINGS
from .rig import jaw_weight, skin_rows
from .shape import N_COLS

EXPRESSION_NAMES = [
    "jawOpen", "jawForward", "jawLeft", "jawRight", "mouthClose",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
]  # fmt: skip
JAW_OPEN_RAD = 0.32  #: jawOpen = 1 rotates the jaw by this much (about 18 degrees)
#: eyeBlink = 1 turns the upper and lower lid by these fractions of the angle that makes their margins
#: meet. More than meeting (1.0 in all): a closed eye's lids press together, and the detector puts its
#: lid points on the skin above and below the margins; with 0.93 + 0.07 MediaPipe still saw a gap of
#: 0.05 inter-ocular distances on renders of a full blink, where real closed eyes give 0.01-0.03.
BLINK_UP, BLINK_DOWN = 1.12, 0.10


def _rot(axis: str, ang: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations about a coordinate axis by per-vertex angles (radians)."""
    c, s = np.cos(ang), np.sin(ang)
    o, z = np.ones_like(ang), np.zeros_like(ang)
    if axis == "x":
        m = [o, z, z, z, c, -s, z, s, c]
    else:  # "y"
        m = [c, z, s, z, o, z, -s, z, c]
    return np.stack(m, -1).reshape(-1, 3, 3)


def rotate_about(p: np.ndarray, center: np.ndarray, axis: str, ang: np.ndarray) -> np.ndarray:
    """Displacement that rotates points p (N, 3) about ``center`` by per-point angles."""
    q = p - center
    return np.einsum("nij,nj->ni", _rot(axis, ang), q) - q


def _gauss(p: np.ndarray, c, r) -> np.ndarray:
    d = (p - np.asarray(c, float)) / np.asarray(r, float)
    return np.exp(-(d * d).sum(1))


class _Ctx:
    """Per-vertex quantities shared by all shapes."""

    def __init__(self, asm: Assembly, A: Anatomy):
        self.A, self.asm = A, asm
        self.V = asm.vertices
        self.skin = asm.part == PART_IDS["head"]
        self.rows = skin_rows(asm)
        g = asm.grid
        self.r_eye_lo, self.r_eye_up = g.eye_rows
        self.r_m_lo, self.r_m_up = g.mouth_rows
        n = g.az.size
        self.col = np.full(len(self.V), -1)
        self.col[:n] = np.arange(n) % N_COLS
        self.jaw = jaw_weight(asm, A)
        # Lip bands: rows just above / below the lip opening, across the mouth width.
        mw = A.mouth_half_width
        lat = np.exp(-np.maximum(np.abs(self.V[:, 0]) - mw * 0.8, 0) ** 2 / 0.006**2)
        front = self.V[:, 2] > A.mouth_z - 0.035
        du = self.rows - self.r_m_up
        dl = self.r_m_lo - self.rows
        self.upper_lip = np.where(self.skin & front & (du >= 0), np.exp(-(du / 3.0) ** 2), 0.0) * lat
        self.lower_lip = np.where(self.skin & front & (dl >= 0), np.exp(-(dl / 3.0) ** 2), 0.0) * lat

    def lids(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """(V,) weights of the upper and lower eyelid of one eye (1 at the margin, smooth falloff)."""
        A = self.A
        ec = A.eye(side)
        dx = (self.V[:, 0] - ec[0]) * side
        t = np.clip(dx / A.eye_half_width, -1, 1)
        up_y = ec[1] + A.eye_open_up * (1 - t**2) ** 0.8
        lo_y = ec[1] - A.eye_open_down * (1 - t**2)
        lat = np.exp(-((np.maximum(np.abs(dx) - 0.75 * A.eye_half_width, 0) / 0.004) ** 2))
        dist = np.linalg.norm(self.V - ec, axis=1)
        radial = np.exp(-((np.maximum(dist - A.lid_radius, 0) / 0.005) ** 2))
        m = self.skin & (self.col >= 0)
        y = self.V[:, 1]
        # Grid rows decide which lid a vertex belongs to (the two margins nearly touch at the corners).
        up = np.where(m & (self.rows >= self.r_eye_up), np.exp(-((np.maximum(y - up_y, 0) / 0.0075) ** 2)), 0.0) * lat * radial
        lo = np.where(m & (self.rows <= self.r_eye_lo), np.exp(-((np.maximum(lo_y - y, 0) / 0.005) ** 2)), 0.0) * lat * radial
        return up, lo

    def follow_lips(self, D: np.ndarray) -> np.ndarray:
        """Copy lip-opening displacements into the mouth bag, fading with depth."""
        bag = np.flatnonzero(self.asm.part == PART_IDS["bag"])
        loop = self.asm.loop
        N = len(loop)
        for k in range(BAG_RINGS):
            ids = bag[k * N : (k + 1) * N]
            D[ids] += D[loop] * (1 - (k + 1) / (BAG_RINGS + 1)) ** 1.5
        return D


def eyelid_weights(asm: Assembly, A: Anatomy, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(V,) weights of the upper and lower eyelid of eye ``side`` (+1 left, -1 right): the rows the blink turns."""
    return _Ctx(asm, A).lids(side)


def _corner(A: Anatomy, side: int) -> np.ndarray:
    return A.mouth_line(np.array([side * A.mouth_half_width]))[0]


def build_expressions(asm: Assembly, A: Anatomy) -> np.ndarray:
    """(V, 3, E) displacement basis in the order of ``EXPRESSION_NAMES``."""
    X = _Ctx(asm, A)
    V, nV = X.V, len(X.V)
    skin = X.skin.astype(float)
    out: dict[str, np.ndarray] = {}
    tmj = np.array(A.tmj)

    # --- jaw
    out["jawOpen"] = rotate_about(V, tmj, "x", JAW_OPEN_RAD * X.jaw)
    out["jawForward"] = X.jaw[:, None] * np.array([0, 0, 0.006])
    for nm, s in (("jawLeft", 1), ("jawRight", -1)):
        out[nm] = X.jaw[:, None] * np.array([s * 0.007, 0, 0])
    # mouthClose: lips sealed while the jaw is open (undo the jaw rotation on the lip bands).
    lips = np.clip(X.lower_lip * 1.2, 0, 1)
    out["mouthClose"] = -rotate_about(V, tmj, "x", JAW_OPEN_RAD * X.jaw * lips) * 0.92 + X.upper_lip[:, None] * np.array([0, -0.0015, 0])

    # --- eyes: lids rotate about the eyeball centre (they lie on the lid sphere)
    e_up, e_dn = A.eye_open_up, A.eye_open_down
    close = np.arcsin(e_up / A.lid_radius) + np.arcsin(e_dn / A.lid_radius)
    for side, sfx in ((1, "Left"), (-1, "Right")):
        ec = A.eye(side)
        up, lo = X.lids(side)
        # Positive rotation about +X tilts +Z towards -Y, i.e. moves the front of the lid down.
        out["eyeBlink" + sfx] = rotate_about(V, ec, "x", up * close * BLINK_UP) + rotate_about(V, ec, "x", -lo * close * BLINK_DOWN)
        out["eyeSquint" + sfx] = rotate_about(V, ec, "x", -lo * 0.22) + rotate_about(V, ec, "x", up * 0.08) + (_gauss(V, ec + (0, -0.018, 0.01), 0.012) * skin)[:, None] * np.array([0, 0.002, 0])
        out["eyeWide" + sfx] = rotate_about(V, ec, "x", -up * 0.22) + rotate_about(V, ec, "x", lo * 0.06)
        out["eyeLookUp" + sfx] = rotate_about(V, ec, "x", -up * 0.12 - lo * 0.08)
        out["eyeLookDown" + sfx] = rotate_about(V, ec, "x", up * 0.2 + lo * 0.08)
        both = up + lo
        # Looking in (towards the nose) turns the lids about +Y towards -X for the left eye.
        out["eyeLookIn" + sfx] = rotate_about(V, ec, "y", -side * both * 0.08)
        out["eyeLookOut" + sfx] = rotate_about(V, ec, "y", side * both * 0.08)

    # --- brows
    ey = A.eye_center[1]
    for side, sfx in ((1, "Left"), (-1, "Right")):
        brow = _gauss(V, (side * 0.030, ey + 0.020, 0.080), (0.024, 0.014, 0.03)) * skin
        outer = _gauss(V, (side * 0.045, ey + 0.018, 0.068), (0.016, 0.016, 0.03)) * skin
        out["browDown" + sfx] = brow[:, None] * np.array([-side * 0.0015, -0.0042, 0.0010])
        # A full raise lifts the brow about a centimetre (5.5 / 6 mm stopped 6.5 % of the inter-ocular
        # distance short of surprised brows on real videos, with every raise shape at its bound).
        out["browOuterUp" + sfx] = outer[:, None] * np.array([0, 0.0090, 0])
    inner = (_gauss(V, (0.013, ey + 0.022, 0.085), (0.014, 0.02, 0.03)) + _gauss(V, (-0.013, ey + 0.022, 0.085), (0.014, 0.02, 0.03))) * skin
    out["browInnerUp"] = inner[:, None] * np.array([0, 0.0095, 0.0008])

    # --- cheeks and nose
    puff = np.zeros((nV, 3))
    for side in (1, -1):
        c = np.array([side * 0.040, A.mouth_y + 0.008, 0.060])
        g = _gauss(V, c, (0.024, 0.022, 0.03)) * skin
        dirn = V - (c - np.array([side * 0.02, 0, 0.01]))
        dirn /= np.linalg.norm(dirn, axis=1, keepdims=True) + 1e-9
        puff += g[:, None] * dirn * 0.009
    out["cheekPuff"] = X.follow_lips(puff + (X.upper_lip + X.lower_lip)[:, None] * np.array([0, 0, 0.002]))
    for side, sfx in ((1, "Left"), (-1, "Right")):
        ch = _gauss(V, (side * 0.040, ey - 0.025, 0.066), (0.02, 0.015, 0.03)) * skin
        out["cheekSquint" + sfx] = ch[:, None] * np.array([0, 0.0035, 0.0008])
        sn = _gauss(V, (side * 0.014, -0.028, 0.095), (0.010, 0.014, 0.02)) * skin
        out["noseSneer" + sfx] = sn[:, None] * np.array([side * 0.001, 0.0035, 0.0005]) + (X.upper_lip * _gauss(V, (side * 0.01, A.mouth_y, A.mouth_z), 0.015))[:, None] * np.array([0, 0.0015, 0])

    # --- mouth
    lipsb = X.upper_lip + X.lower_lip
    mouth_c = np.array([0.0, A.mouth_y, A.mouth_z - 0.01])
    mouth_area = _gauss(V, mouth_c, (0.035, 0.025, 0.04)) * skin
    lat = V[:, 0] / A.mouth_half_width
    cz = np.clip(np.abs(lat), 0, 1.3)
    # Funnel: lips forward and flared into an O; corners in.
    d = np.zeros((nV, 3))
    d[:, 2] = 0.0045 * lipsb
    d[:, 1] = 0.0028 * (X.upper_lip - X.lower_lip) * (1 - 0.5 * cz)
    d[:, 0] = -0.006 * np.sign(lat) * cz * lipsb
    out["mouthFunnel"] = X.follow_lips(d + mouth_area[:, None] * np.array([0, 0, 0.002]))
    d = np.zeros((nV, 3))
    d[:, 2] = 0.007 * lipsb
    d[:, 0] = -0.010 * np.sign(lat) * cz ** 1.5 * lipsb - 0.004 * np.sign(lat) * np.clip(np.abs(lat), 0, 1) * mouth_area
    out["mouthPucker"] = X.follow_lips(d + mouth_area[:, None] * np.array([0, 0, 0.0025]))
    for nm, s in (("mouthLeft", 1), ("mouthRight", -1)):
        out[nm] = X.follow_lips(np.clip(mouth_area + lipsb, 0, 1)[:, None] * np.array([s * 0.007, 0, -0.001]))

    for side, sfx in ((1, "Left"), (-1, "Right")):
        cp = _corner(A, side)
        corner = _gauss(V, cp, (0.016, 0.013, 0.02)) * skin
        cheek = _gauss(V, cp + (side * 0.012, 0.022, -0.008), (0.02, 0.018, 0.025)) * skin
        half = np.clip(0.5 + side * V[:, 0] / 0.012, 0, 1)  # this side of the mouth
        out["mouthSmile" + sfx] = X.follow_lips(corner[:, None] * np.array([side * 0.0045, 0.0060, -0.0030]) + cheek[:, None] * np.array([side * 0.001, 0.0030, 0.0015]))
        out["mouthFrown" + sfx] = X.follow_lips(corner[:, None] * np.array([side * 0.0010, -0.0055, -0.0005]))
        out["mouthDimple" + sfx] = X.follow_lips(corner[:, None] * np.array([side * 0.0025, 0.0, -0.0035]))
        out["mouthStretch" + sfx] = X.follow_lips(corner[:, None] * np.array([side * 0.0055, -0.0025, -0.0015]) + (X.lower_lip * half)[:, None] * np.array([0, -0.0015, 0]))
        out["mouthPress" + sfx] = X.follow_lips(((X.upper_lip - X.lower_lip) * half)[:, None] * np.array([0, -0.0012, 0]) + (lipsb * half)[:, None] * np.array([0, 0, -0.0012]))
        out["mouthLowerDown" + sfx] = X.follow_lips((X.lower_lip * half)[:, None] * np.array([0, -0.0045, 0.0005]))
        out["mouthUpperUp" + sfx] = X.follow_lips((X.upper_lip * half)[:, None] * np.array([0, 0.0045, 0.0005]))

    out["mouthRollLower"] = X.follow_lips(X.lower_lip[:, None] * np.array([0, 0.0012, -0.0040]))
    out["mouthRollUpper"] = X.follow_lips(X.upper_lip[:, None] * np.array([0, -0.0012, -0.0040]))
    chin = _gauss(V, (0, -0.085, 0.075), (0.02, 0.018, 0.03)) * skin
    out["mouthShrugLower"] = X.follow_lips(X.lower_lip[:, None] * np.array([0, 0.0025, 0.0015]) + chin[:, None] * np.array([0, 0.0025, 0.0015]))
    out["mouthShrugUpper"] = X.follow_lips(X.upper_lip[:, None] * np.array([0, 0.0022, 0.001]))

    # Eyeballs never deform; only jaw/lip shapes may move the bag (already applied above).
    eyes = (asm.part == PART_IDS["eye_left"]) | (asm.part == PART_IDS["eye_right"])
    basis = np.stack([out[n] for n in EXPRESSION_NAMES], -1)
    basis[eyes] = 0.0
    # Teeth are rigid: only the jaw shapes move the lower arch (through the jaw weight).
    teeth = (asm.part == PART_IDS["teeth_upper"]) | (asm.part == PART_IDS["teeth_lower"])
    jaw_shapes = [EXPRESSION_NAMES.index(n) for n in ("jawOpen", "jawForward", "jawLeft", "jawRight")]
    keep = basis[teeth][:, :, jaw_shapes].copy()
    basis[teeth] = 0.0
    basis[np.ix_(teeth, np.arange(3), jaw_shapes)] = keep
    return basis

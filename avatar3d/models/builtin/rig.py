"""Skeleton of the built-in head: joints, joint regressor and smooth skinning weights.

Joints (rest pose): root at the neck base, neck at the skull base (C1), jaw at the TMJ hinge
midpoint, eyes at the eyeball centres. The regressor rows are minimum-norm *affine* combinations
of nearby vertices, so joints follow identity changes of the surrounding surface.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .assemble import PART_IDS, Assembly
from .shape import N_COLS

JOINT_NAMES = ["root", "neck", "jaw", "eye_left", "eye_right"]
PARENTS = np.array([-1, 0, 1, 1, 1])


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def affine_weights(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(n,) minimum-norm weights w with sum(w) = 1 and w @ points = target."""
    M = np.concatenate([points.T, np.ones((1, len(points)))])  # (4, n)
    rhs = np.concatenate([target, [1.0]])
    return M.T @ np.linalg.solve(M @ M.T, rhs)


def joint_positions(A: Anatomy) -> np.ndarray:
    return np.stack([np.array(A.neck_base), np.array(A.skull_base), np.array(A.tmj), A.eye(1), A.eye(-1)])


def skin_rows(asm: Assembly) -> np.ndarray:
    """(V,) grid row of every skin vertex (the crown pole gets the last row + 1; others -1)."""
    g = asm.grid
    rows = np.full(len(asm.vertices), -1.0)
    n = g.az.size
    rows[:n] = np.arange(n) // N_COLS
    rows[n] = g.az.shape[0]
    return rows


def jaw_weight(asm: Assembly, A: Anatomy) -> np.ndarray:
    """(V,) how much each vertex follows the jaw: 1 on chin / lower lip / lower mouth bag, 0 above the lips."""
    V = asm.vertices
    g = asm.grid
    rows = skin_rows(asm)
    r_low = g.mouth_rows[0]
    c = np.array(A.ray_center)
    az = np.arctan2(V[:, 0] - c[0], V[:, 2] - c[2])
    c0, c1 = g.mouth_cols
    half = 0.5 * (g.az[0, c1] - g.az[0, c0])
    out_of_mouth = np.maximum(0.0, np.abs(az) - half) / 0.35  # 0 inside the lip opening, grows towards the ears
    # Rows below the lower-lip row go with the jaw; outside the opening the step softens into a ramp
    # so the cheeks stretch instead of tearing.
    ramp = 0.5 + 6.0 * out_of_mouth
    below = (r_low + 0.5 - rows) / ramp + 0.5
    w = np.clip(below, 0, 1)
    # Fade towards the back of the jaw (the ramus pivots at the TMJ) and down the throat.
    w *= 1 - smoothstep((np.abs(az) - 0.85) / 0.5)
    # Below the lower border of the mandible (chin -> jaw angle) the weight fades out within ~2.5 cm,
    # so the throat and the neck under the ears stretch instead of swinging back with the jaw.
    y_border = np.interp(V[:, 2], [-0.01, 0.07], [-0.068, -0.108])
    w *= smoothstep((V[:, 1] - (y_border - 0.025)) / 0.025)
    w[asm.part != PART_IDS["head"]] = 0.0
    bag = asm.part == PART_IDS["bag"]
    w[bag] = np.where(asm.bag_lower[bag], 1.0 - 0.45 * asm.bag_depth[bag], 0.0)
    w[asm.part == PART_IDS["teeth_lower"]] = 1.0  # rigid on the jaw
    return w


def skinning(asm: Assembly, A: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns joints (J, 3), j_regressor (J, V), lbs_weights (V, J)."""
    V = asm.vertices
    J = joint_positions(A)
    nV = len(V)
    reg = np.zeros((5, nV))
    skin = np.flatnonzero(asm.part == PART_IDS["head"])
    for j in range(3):
        d = np.linalg.norm(V[skin] - J[j], axis=1)
        near = skin[np.argsort(d)[:64]] if j != 0 else skin[np.argsort(np.abs(V[skin, 1] - J[j, 1]))[:2 * N_COLS]]
        reg[j, near] = affine_weights(V[near], J[j])
    for j, name in ((3, "eye_left"), (4, "eye_right")):
        ids = np.flatnonzero(asm.part == PART_IDS[name])
        reg[j, ids] = affine_weights(V[ids], J[j])
    W = np.zeros((nV, 5))
    y = V[:, 1]
    # Head vs. neck-base blend spread over the whole neck (less candy-wrapping when the neck turns);
    # the height is tilted forward so the underside of the chin still belongs to the head.
    q = y + 0.35 * np.clip(V[:, 2], 0.0, 0.08)
    head = smoothstep((q - (A.neck_cut_y + 0.01)) / 0.12)
    jw = jaw_weight(asm, A)
    W[:, 0] = 1 - head
    W[:, 2] = head * jw
    W[:, 1] = head * (1 - jw)
    for j, name in ((3, "eye_left"), (4, "eye_right")):
        ids = asm.part == PART_IDS[name]
        W[ids] = 0
        W[ids, j] = 1
    return J, reg, W

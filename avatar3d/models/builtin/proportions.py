"""Anthropometric measurements of the built-in head, to compare it with real adult heads.

Reference adult values (soft tissue, both sexes): chin to vertex ~0.23 m, head breadth ~0.15 m,
head length (glabella to opisthocranion) ~0.19-0.20 m, pupils at about half the head height,
neck ~0.11-0.12 m wide.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .shape import N_COLS, N_ROWS

__all__ = ["head_proportions"]


def head_proportions(vertices: np.ndarray, part_ids: np.ndarray, A: Anatomy) -> dict[str, float]:
    """Measurements (metres, or fractions) of a built-in head mesh in the rest pose.

    Args:
        vertices: (V, 3) vertices of the built-in head (its own vertex order: the skin grid first).
        part_ids: (V,) part index, 0 = skin (see ``assemble.PART_IDS``).
        A: the anatomy the head was generated with (eye height, neck cut).

    Returns:
        height (menton to vertex), breadth (widest skin, ears excluded), length (glabella to the
        back of the skull), eye_height (pupil level above the menton / height), neck_width and
        neck_depth (half-way between the menton and the neck cut), neck_cut_width.
    """
    V = np.asarray(vertices, np.float64)
    skin = V[np.asarray(part_ids) == 0]
    crown = skin[:, 1].max()
    mid = skin[np.abs(skin[:, 0]) < 0.003]
    # Menton: the lowest midline point of the chin, i.e. in front of the submental slope (the chin's
    # underside is within ~3.5 cm behind the lips).
    menton = mid[mid[:, 2] > A.mouth_z - 0.035][:, 1].min()
    ey = A.eye_center[1]
    brow = mid[(mid[:, 1] > ey + 0.008) & (mid[:, 1] < ey + 0.04)]
    length = brow[:, 2].max() - skin[:, 2].min()
    # Skin grid rows are (almost) horizontal on the neck: measure the row half-way down the neck.
    grid = V[: N_ROWS * N_COLS].reshape(N_ROWS, N_COLS, 3)
    y_mid = 0.5 * (menton + A.neck_cut_y)
    r = int(np.argmin(np.abs(grid[:, :, 1].mean(1) - y_mid)))
    row = grid[r]
    return {
        "height": float(crown - menton),
        "breadth": float(2 * np.abs(skin[:, 0]).max()),
        "length": float(length),
        "eye_height": float((ey - menton) / (crown - menton)),
        "neck_width": float(np.ptp(row[:, 0])),
        "neck_depth": float(np.ptp(row[:, 2])),
        "neck_cut_width": float(np.ptp(grid[0, :, 0])),
        "neck_length": float(menton - A.neck_cut_y),
    }

"""Landmark measurements shared by the tracking tests (synthetic and real data)."""

from __future__ import annotations

import numpy as np


def lip_opening_mm(model) -> tuple[np.ndarray, np.ndarray]:
    """Downward motion (mm) of the upper and lower inner-lip landmarks at jawOpen = 1."""
    import torch

    from avatar3d.models.embedding import LOWER_INNER_LIP, UPPER_INNER_LIP

    with torch.no_grad():
        rest = model().landmarks[0]
        opened = model(expression=model.expression_vector({"jawOpen": 1.0})).landmarks[0]
    dy = (rest[:, 1] - opened[:, 1]).numpy() * 1000
    return dy[list(UPPER_INNER_LIP)], dy[list(LOWER_INNER_LIP)]

"""Small tensor helpers shared across the package."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["f32"]


def f32(a) -> Tensor:
    """``a`` (array-like or tensor) as a float32 CPU-or-same-device tensor; no copy when it already is one."""
    if isinstance(a, Tensor):
        return a.to(torch.float32)
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)

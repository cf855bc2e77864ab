"""Small tensor helpers shared across the package."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["f32", "torch_threads"]


def f32(a) -> Tensor:
    """``a`` (array-like or tensor) as a float32 CPU-or-same-device tensor; no copy when it already is one."""
    if isinstance(a, Tensor):
        return a.to(torch.float32)
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the caller's count on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

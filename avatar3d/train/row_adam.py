"""Adam on the rows (frames) of a per-frame parameter tensor, stepping only a mini-batch's rows."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["RowAdam"]


class RowAdam:
    """Adam-like optimiser on the rows (frames) of an (N, ...) tensor, stepping only a mini-batch's rows.

    Two changes from torch's Adam, both against jitter: the second moment is shared by all frames
    (per coordinate), so a frame whose gradient is small - already aligned - takes a small step
    instead of Adam's unit-size first step; and the learning rate decays (cosine) with each row's
    own step count, so the last steps do not leave the parameters oscillating by ``lr``. Momentum
    persists per row across visits (torch's Adam would also move rows outside the batch).

    Args:
        p: (N, ...) parameters, updated in place; lr: learning rate (units of ``p`` per step);
        total_steps: steps per row over which the learning rate decays to 0.
    """

    def __init__(self, p: Tensor, lr: float, total_steps: int, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-12):
        self.p, self.lr, self.total, self.b1, self.b2, self.eps = p, lr, max(1, total_steps), betas[0], betas[1], eps
        self.m = torch.zeros_like(p)  #: (N, ...) first moment per row
        self.v = torch.zeros(p.shape[1:])  #: (...) second moment shared by all rows
        self.t = torch.zeros(p.shape[0])  #: (N,) steps taken per row
        self.tv = 0  #: steps taken by the shared second moment

    def step(self, idx: Tensor, g: Tensor) -> None:
        """Step rows ``idx`` (B,) with their gradient ``g`` (B, ...)."""
        self.t[idx] += 1
        self.tv += 1
        m = self.m[idx] * self.b1 + (1 - self.b1) * g
        self.m[idx] = m
        self.v = self.v * self.b2 + (1 - self.b2) * (g * g).mean(0)
        shape = (-1,) + (1,) * (g.ndim - 1)
        t = self.t[idx].view(shape)
        mh = m / (1 - self.b1**t)
        vh = self.v / (1 - self.b2**self.tv)
        decay = 0.5 * (1 + torch.cos(torch.pi * ((t - 1) / self.total).clamp(0, 1)))
        self.p[idx] -= self.lr * decay * mh / (vh.sqrt() + self.eps)

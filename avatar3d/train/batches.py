"""Mini-batches of consecutive frames for per-frame optimisation (frames of one sequence)."""

from __future__ import annotations

import numpy as np

__all__ = ["FrameBatches"]


class FrameBatches:
    """Consecutive mini-batches covering frames 0..N-1, in random order; boundaries shift every epoch.

    Consecutive frames let temporal terms (differences along time) see neighbours inside a batch;
    shifting the boundaries each epoch stops the same pairs from always being split.

    Args:
        num_frames: N; batch: frames per mini-batch; rng: the only source of randomness (draws two
            numbers per epoch, so a schedule is reproducible from its seed).
    """

    def __init__(self, num_frames: int, batch: int, rng: np.random.Generator):
        self.N, self.B, self.rng = int(num_frames), int(batch), rng

    def epoch(self) -> list[np.ndarray]:
        """One pass: a list of index arrays (each consecutive frames) in random order."""
        N, B = self.N, self.B
        if N <= B:
            return [np.arange(N)]
        off = int(self.rng.integers(0, B))
        edges = [0] + list(range(off if off > 0 else B, N, B)) + [N]
        parts = [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        return [parts[i] for i in self.rng.permutation(len(parts))]

    def epochs(self, n: int) -> list[np.ndarray]:
        """``n`` passes, one after the other (drawn now, so the schedule can be replayed)."""
        return [c for _ in range(n) for c in self.epoch()]

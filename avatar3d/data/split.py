"""The one train/test split of a tracked sequence, used by every trainer and evaluation.

The test frames are the **last** frames of the sequence (never interleaved with training frames, so a
model is judged on expressions and poses it has not seen a neighbour of):

    held out = min(max(30, ceil(0.15 * n)), n // 2)

i.e. the last 15% of the frames, at least 30, but never more than half of them, so short sequences
still train on most of their frames:

=========  ==========  =========
frames n   held out    training
=========  ==========  =========
1          0           1  (nothing to evaluate on)
10         5           5
60         30          30
100        30          70
354        54          300
=========  ==========  =========
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Split", "holdout_count", "train_test_split", "TEST_PERCENT", "MIN_TEST_FRAMES"]

TEST_PERCENT = 15
MIN_TEST_FRAMES = 30


class Split(NamedTuple):
    """Frame indices of the two parts (int64, ascending); together they are ``0..n-1`` once each."""

    train: np.ndarray
    test: np.ndarray


def holdout_count(n: int) -> int:
    """How many of ``n`` frames are held out for testing (see the module docstring)."""
    if n < 0:
        raise ValueError(f"a sequence cannot have {n} frames")
    fraction = -(-TEST_PERCENT * n // 100)  # ceil(0.15 n) in integers: 0.15 * 100 is 15.000000000000002 in floats
    return min(max(MIN_TEST_FRAMES, fraction), n // 2)


def train_test_split(n: int) -> Split:
    """The split of a sequence of ``n`` frames: the last :func:`holdout_count` frames are the test set."""
    k = holdout_count(n)
    idx = np.arange(n, dtype=np.int64)
    return Split(train=idx[: n - k], test=idx[n - k :])
